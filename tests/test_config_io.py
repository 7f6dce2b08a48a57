"""vasajax.config_io: the one config ↔ JSON form (round trips, old files, bad files)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from vasajax import config_io
from vasajax.checkpoint_export import CONFIG_CLASSES
from vasajax.errors import UserError
from vasajax.face.config import FaceConfig
from vasajax.train.face import FaceTrainConfig
from vasajax.train.motion import MotionTrainConfig
from vasajax.zoo.liveportrait.config import LivePortraitConfig


@dataclasses.dataclass(frozen=True)
class Inner:
    sizes: tuple[int, ...] = (1, 2)
    pairs: tuple[tuple[int, int], ...] = ((1, 2), (3, 4))


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: Inner = Inner()
    maybe: Inner | None = None
    rate: float = 0.5
    name: str = "x"

    def __post_init__(self):
        if self.rate < 0:
            raise ValueError("rate must be ≥ 0")


def through_json(d):
    return json.loads(json.dumps(d))


@pytest.mark.parametrize(
    "cfg",
    [
        FaceTrainConfig.tiny(),
        MotionTrainConfig.tiny(),
        FaceConfig.small(),
        LivePortraitConfig(),
        *(cls() if name != "face" else cls.small() for name, cls in CONFIG_CLASSES.items()),
    ],
    ids=lambda c: type(c).__name__,
)
def test_every_shipped_config_round_trips_through_json(cfg):
    d = config_io.to_dict(cfg)
    assert through_json(d) == d  # already what a reload sees
    assert config_io.from_dict(type(cfg), through_json(d)) == cfg


def test_nested_optional_and_tuples_of_tuples_come_back_typed():
    cfg = Outer(maybe=Inner(sizes=(5,)), rate=np.float32(0.25).item())
    d = through_json(config_io.to_dict(cfg))
    assert list(d) == sorted(d) and d["inner"]["pairs"] == [[1, 2], [3, 4]]
    back = config_io.from_dict(Outer, d)
    assert back == cfg and isinstance(back.maybe, Inner) and back.inner.pairs == ((1, 2), (3, 4))
    assert config_io.to_dict(Outer(rate=np.float64(2.0)))["rate"] == 2.0  # numpy scalars become numbers


def test_missing_fields_keep_defaults_so_older_files_load():
    assert config_io.from_dict(Outer, {"rate": 1.0}) == Outer(rate=1.0)


def test_unknown_field_and_bad_value_are_one_line_user_errors():
    with pytest.raises(UserError, match=r"config.json: outer: field 'extra' is unknown to this vasajax version"):
        config_io.from_dict(Outer, {"extra": 1}, what="config.json: outer")
    with pytest.raises(UserError, match=r"Outer.inner: field 'bogus' is unknown"):
        config_io.from_dict(Outer, {"inner": {"bogus": 1}})
    with pytest.raises(UserError, match="invalid Outer .rate must be ≥ 0"):
        config_io.from_dict(Outer, {"rate": -1.0})
    with pytest.raises(UserError, match="expected an object of Outer fields, got list"):
        config_io.from_dict(Outer, [1, 2])
