"""Foreign and exported weights ⇄ NNX params: one key table per model, one safetensors codec.

Every converter in vasajax (wav2vec2/HuBERT, VGG19, SyncNet, the zoo's LivePortrait and JoyVASA) is a list of
``Rule`` s — *our* parameter path (a regex over the dotted NNX path) → *their* key (a template filled with the
regex groups) and a layout transform — plus, where a model needs it, a function that canonicalises the foreign
state dict first (strip a wrapper prefix, fold weight norm, divide by a spectral norm). ``convert`` walks our
model's abstract params, pulls each one through its rule, checks the shape, and reports every foreign key it did
not use: nothing is dropped silently. ``plan`` does the same from shapes alone, so a test can check a converter
against the key list of a full-size checkpoint without the checkpoint.

Layouts: torch stores ``Linear`` as ``O×I`` and convolutions as ``O×I×k…``; NNX is channels-last, ``I×O`` and
``k…×I×O``. Files are read and written with the ``safetensors`` library (bfloat16 via ml_dtypes); writes are
atomic (a temporary file renamed into place), so a full disk never leaves half a file behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import jax.numpy as jnp
import numpy as np
from flax import nnx

from vasajax.errors import UserError

Transform = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------------ layout transforms


def same(w: np.ndarray) -> np.ndarray:
    """No layout change (biases, norms, embeddings)."""
    return w


def linear(w: np.ndarray) -> np.ndarray:
    """torch ``Linear`` ``O×I`` → ``I×O``."""
    return w.T


def conv(w: np.ndarray) -> np.ndarray:
    """torch ``ConvNd`` ``O×I×k1…kN`` → channels-last ``k1…kN×I×O`` (any N)."""
    return np.moveaxis(w, (0, 1), (-1, -2))


def conv_transpose(w: np.ndarray) -> np.ndarray:
    """torch ``ConvTransposeNd`` ``I×O×k…`` → ``nnx.ConvTranspose`` ``k…×I×O`` with the taps flipped.

    torch's transposed convolution is the gradient of a convolution (kernel taps mirrored); NNX's
    ``ConvTranspose`` without ``transpose_kernel`` is a dilated convolution, so the spatial axes are reversed.
    """
    n = w.ndim - 2
    w = w[(slice(None), slice(None), *[slice(None, None, -1)] * n)]
    return np.moveaxis(w, (0, 1), (-2, -1))


@dataclasses.dataclass(frozen=True)
class Rule:
    """Our parameter path (regex, dotted) → their key (``str.format`` template over the regex groups)."""

    ours: str
    theirs: str
    transform: Transform = same

    def match(self, name: str) -> str | None:
        m = re.fullmatch(self.ours, name)
        return None if m is None else self.theirs.format(*m.groups())


# ------------------------------------------------------------------------------------------ trees


def flatten(tree: Mapping, prefix: tuple = ()) -> dict[tuple, object]:
    """Nested mapping → ``{path tuple: leaf}``."""
    flat: dict[tuple, object] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            flat.update(flatten(v, (*prefix, k)))
        else:
            flat[(*prefix, k)] = v
    return flat


def unflatten(flat: Mapping[tuple, object]) -> dict:
    """``{path tuple: leaf}`` → nested dict."""
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return tree


def dotted(path: Sequence) -> str:
    return ".".join(str(p) for p in path)


def param_shapes(make: Callable[[], nnx.Module]) -> dict[str, tuple[int, ...]]:
    """``{dotted path: shape}`` of every ``nnx.Param`` the factory's model holds (built abstractly: no memory)."""
    _, state = nnx.split(nnx.eval_shape(make), nnx.Param, ...)[:2]
    return {dotted(p): tuple(v.shape) for p, v in flatten(nnx.to_pure_dict(state)).items()}


# ------------------------------------------------------------------------------------------ conversion


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where each of our params comes from, and what of theirs is left over."""

    sources: dict[str, tuple[str, Transform]]
    """our dotted path → (their key, transform)"""
    unused: list[str]
    """their keys no rule read and no ``ignored`` pattern excused"""


def _rule_for(name: str, rules: Sequence[Rule], model: str) -> tuple[str, Transform]:
    for r in rules:
        key = r.match(name)
        if key is not None:
            return key, r.transform
    raise UserError(f"internal: the {model} converter has no rule for our parameter {name!r}")


def plan(
    ours: Mapping[str, tuple[int, ...]],
    theirs: Mapping[str, tuple[int, ...]],
    rules: Sequence[Rule],
    *,
    model: str,
    ignored: Sequence[str] = (),
) -> Plan:
    """Checks, from shapes alone, that ``rules`` map every one of ``ours`` onto a key of ``theirs`` whose shape
    (after the transform) is ours. Raises ``UserError`` naming the first missing key or mismatched shape."""
    sources: dict[str, tuple[str, Transform]] = {}
    for name, shape in ours.items():
        key, transform = _rule_for(name, rules, model)
        if key not in theirs:
            raise UserError(f"{model} weights lack {key!r} (needed for {name}); is it a {model} file?")
        got = transform(np.broadcast_to(np.float32(0), tuple(theirs[key]))).shape  # a view: no memory
        if tuple(got) != tuple(shape):
            raise UserError(
                f"{model} weight {key!r} has shape {tuple(theirs[key])}, the model wants {tuple(shape)} "
                "(after the layout change): the weights and the config disagree"
            )
        sources[name] = (key, transform)
    read = {k for k, _ in sources.values()}
    unused = sorted(k for k in theirs if k not in read and not any(re.search(p, k) for p in ignored))
    return Plan(sources, unused)


def convert(
    make: Callable[[], nnx.Module],
    theirs: Mapping[str, np.ndarray],
    rules: Sequence[Rule],
    *,
    model: str,
    ignored: Sequence[str] = (),
    unused: Literal["error", "warn"] = "error",
    dtype=np.float32,
) -> nnx.Module:
    """The model ``make()`` builds, with every ``nnx.Param`` taken from ``theirs`` through ``rules``.

    Non-param variables (batch-norm statistics, spectral-norm vectors, ...) keep their initial values unless a
    rule names them too: every variable whose path a rule matches is converted. Foreign keys that no rule read
    and no ``ignored`` regex excuses raise ``UserError`` (``unused="error"``) or warn.
    """
    abstract = nnx.eval_shape(make)
    graphdef, state = nnx.split(abstract)
    flat = flatten(nnx.to_pure_dict(state))
    convertible = {}
    for path, leaf in flat.items():
        name = dotted(path)
        if any(r.match(name) is not None for r in rules):
            convertible[name] = tuple(leaf.shape)
    params = {dotted(p) for p in flatten(nnx.to_pure_dict(nnx.state(abstract, nnx.Param)))}
    missing = sorted(params - set(convertible))
    if missing:
        raise UserError(f"internal: the {model} converter has no rule for our parameter {missing[0]!r}")
    p = plan(convertible, {k: np.shape(v) for k, v in theirs.items()}, rules, model=model, ignored=ignored)
    if p.unused:
        msg = f"{model} weights: {len(p.unused)} keys the converter does not read, e.g. {p.unused[:3]}"
        if unused == "error":
            raise UserError(msg + "; is it the right model or variant?")
        warnings.warn(msg, stacklevel=2)
    # Every variable converted: fill the abstract model (no initialisers run). Otherwise materialise the concrete
    # model only now (the checks above are abstract) so the variables no rule names keep their initial values.
    if len(p.sources) < len(flat):
        graphdef, state = nnx.split(make())
    new = {}
    for path, leaf in flatten(nnx.to_pure_dict(state)).items():
        name = dotted(path)
        if name in p.sources:
            key, transform = p.sources[name]
            new[path] = jnp.asarray(np.ascontiguousarray(transform(np.asarray(theirs[key]).astype(dtype))))
        else:
            new[path] = leaf
    nnx.replace_by_pure_dict(state, unflatten(new))
    return nnx.merge(graphdef, state)


# ------------------------------------------------------------------------------------------ files


def read_state_dict(path: str | os.PathLike, *, what: str) -> dict[str, np.ndarray]:
    """A torch state dict file (``.pth``/``.pt``/``.model``, read with ``torch.load(weights_only=True)``: no
    arbitrary pickles; torch is imported only here) or a ``.safetensors`` file, as float32 numpy arrays. ``what``
    names the weights in the one-line ``UserError`` for a missing or unreadable file."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise UserError(f"{what} weights {p!r} not found")
    if p.endswith(".safetensors"):
        return {k: np.asarray(v, np.float32) for k, v in read_safetensors(p)[0].items()}
    try:
        import torch
    except ImportError:
        raise UserError(f"reading {p!r} needs torch (pip install 'vasajax[convert]'), or a .safetensors copy") from None
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unreadable file is the user's to fix
        raise UserError(f"cannot read {what} weights {p!r} as a torch state dict ({type(e).__name__})") from None
    if not isinstance(sd, Mapping):
        raise UserError(f"{p!r} holds a {type(sd).__name__}, not a state dict; save model.state_dict() instead")
    return {k: v.detach().float().cpu().numpy() for k, v in sd.items() if hasattr(v, "detach")}


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file; a missing or malformed file raises ``UserError``."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    try:
        with safe_open(str(p), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{p} is not a readable safetensors file ({e}); re-export or re-download it") from None
    return tensors, meta


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping | None = None):
    """Writes ``tensors`` (name → array; float32, bfloat16, float16, int32, ...) atomically."""
    from safetensors.numpy import save

    p = Path(path)
    blob = _canonical_header(
        save(
            {k: np.ascontiguousarray(np.asarray(v)).reshape(np.shape(v)) for k, v in tensors.items()},
            metadata={str(k): str(v) for k, v in (metadata or {}).items()},
        )
    )
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _canonical_header(blob: bytes) -> bytes:
    """The same file with its JSON header's keys sorted: the library writes ``__metadata__`` from a hash map, in an
    order that changes from process to process, and an export must be byte-identical for the same weights."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-(8 + len(text)) % 8)  # the data stays 8-byte aligned, as the library writes it
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]
