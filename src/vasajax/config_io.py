"""Config dataclasses ↔ JSON: the one way every config in vasajax is written and read back.

Configs are frozen dataclasses (configs as code). What a run folder's ``config.json``, an export's ``config.json``
or a motion-shard manifest stores is :func:`to_dict` of one; :func:`from_dict` rebuilds it:

- ``to_dict``: nested dataclasses become dicts with sorted keys (one canonical form: equal configs, identical
  JSON), tuples become lists, numpy scalars Python numbers — exactly what ``json.loads(json.dumps(...))`` gives
  back, so a stored config compares equal to a fresh one;
- ``from_dict``: each field is rebuilt by its annotated type — a nested config from its dict, a tuple from a list
  (element-wise, so tuples of tuples survive; a class may name the config class of a field by the dict's other
  values, ``config_types(d)``, as a motion run's model config depends on its generator) — fields the dict lacks keep
  their defaults (configs written before
  a field existed still load), and a field this version does not know, or a value the dataclass rejects, is a
  one-line :class:`~vasajax.errors.UserError` that names where it came from (``what``).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from vasajax.errors import UserError

T = TypeVar("T")


def to_dict(cfg: Any) -> Any:
    """A (nested) config dataclass as JSON-ready data: dataclasses → dicts (keys sorted), tuples → lists."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {str(k): to_dict(v) for k, v in sorted(cfg.items())}
    if isinstance(cfg, list | tuple):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, np.generic):
        return cfg.item()
    return cfg


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dataclass_in(typ: Any) -> type | None:
    """The config dataclass a field annotation names (``X`` or ``X | None``), if any."""
    if dataclasses.is_dataclass(typ) and isinstance(typ, type):
        return typ
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(typ) if dataclasses.is_dataclass(a) and isinstance(a, type)]
        return found[0] if len(found) == 1 else None
    return None


def _value(typ: Any, v: Any, what: str) -> Any:
    sub = _dataclass_in(typ)
    if sub is not None and isinstance(v, Mapping):
        return from_dict(sub, v, what=what)
    if isinstance(v, list):
        return tuple(_value(Any, x, what) for x in v)
    return v


def from_dict(cls: type[T], d: Mapping[str, Any], *, what: str | None = None) -> T:
    """Rebuild config dataclass ``cls`` from :func:`to_dict`'s form (lists → tuples, nested configs by type)."""
    what = what or cls.__name__
    if not isinstance(d, Mapping):
        raise UserError(f"{what}: expected an object of {cls.__name__} fields, got {type(d).__name__}")
    types_ = _field_types(cls)
    if hasattr(cls, "config_types"):  # fields whose config class depends on the data (e.g. a run's generator)
        types_ = {**types_, **cls.config_types(d)}
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise UserError(
            f"{what}: field '{unknown[0]}' is unknown to this vasajax version; "
            "upgrade vasajax or use a file written by this version"
        )
    kw = {k: _value(types_[k], v, f"{what}.{k}") for k, v in d.items()}
    try:
        return cls(**kw)
    except (TypeError, ValueError, UserError) as e:
        raise UserError(f"{what}: invalid {cls.__name__} ({e})") from None
