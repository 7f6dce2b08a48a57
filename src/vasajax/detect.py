"""``vasajax detect VIDEO``: is this a vasajax video? The metadata tag, a C2PA manifest and the watermark of one file.

The marks themselves are ``vasajax.provenance`` (watermark, tag) and ``vasajax.c2pa_manifest`` (signed manifest);
this module reads a file through ``vasajax.media`` and asks each of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence

from vasajax import c2pa_manifest, media
from vasajax.provenance import Detection, detect_frames, has_tag


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoDetection:
    """Watermark, metadata-tag and C2PA evidence for one video file."""

    present: bool
    """The watermark is present, or the vasajax metadata tag, or a valid vasajax C2PA manifest."""
    confidence: float
    """The watermark's confidence (see :class:`Detection`); the tag, easy to forge, does not raise it."""
    z: float
    """The watermark's z-score."""
    watermark: Detection
    tag: str | None
    """The vasajax metadata tag when found."""
    c2pa: dict | None = None
    """What :func:`vasajax.c2pa_manifest.read` found (None when c2pa-python is not installed)."""

    def to_dict(self) -> dict:
        return {
            "present": self.present,
            "confidence": self.confidence,
            "z": self.z,
            "watermark_present": self.watermark.present,
            "watermark_edit": self.watermark.edit,
            "frames_examined": self.watermark.num_frames,
            "metadata_tag": self.tag,
            "c2pa": self.c2pa,
        }


def detect_video(path: str | os.PathLike, key: str | bytes | None = None, *, max_frames: int = 250) -> VideoDetection:
    """Check a video file for the metadata tag, a C2PA manifest and the watermark (first ``max_frames`` frames)."""
    tag = has_tag(media.read_metadata(path))
    manifest = c2pa_manifest.read(path)
    wm = detect_frames(media.iter_frames(path), key, max_frames=max_frames)
    signed = bool(manifest and manifest.get("vasajax") and manifest.get("valid"))
    present = wm.present or tag is not None or signed
    return VideoDetection(present=present, confidence=wm.confidence, z=wm.z, watermark=wm, tag=tag, c2pa=manifest)


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``vasajax detect VIDEO [--json] [--key KEY] [--max-frames N]``: is this a vasajax video? Exit 0 either way."""
    ap = argparse.ArgumentParser(prog="vasajax detect", description="Look for vasajax's watermark and metadata tag.")
    ap.add_argument("video", help="video file (mp4, or anything ffmpeg reads)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    ap.add_argument("--key", default=None, help="watermark key (default: $VASAJAX_WATERMARK_KEY or the public key)")
    ap.add_argument("--max-frames", type=int, default=250, help="frames to examine from the start (default 250)")
    args = ap.parse_args(argv)
    d = detect_video(args.video, args.key, max_frames=args.max_frames)
    if args.json:
        print(json.dumps({"video": str(args.video), **d.to_dict()}))
        return 0
    verdict = "present" if d.present else "absent"
    wm = f"found ({d.watermark.edit.removeprefix('found ')})" if d.watermark.present else "not found"
    if not d.watermark.present and d.watermark.edit:
        wm += f" ({d.watermark.edit})"
    if d.c2pa is None:
        c2pa = "C2PA not checked (pip install 'vasajax[c2pa]')"
    elif not d.c2pa.get("found"):
        c2pa = "no C2PA manifest"
    else:
        c2pa = f"C2PA manifest {'valid' if d.c2pa.get('valid') else 'INVALID'}: {d.c2pa.get('summary', '')}"
    print(
        f"{verdict}: watermark {wm}, confidence {d.confidence:.6f}, z = {d.z:.1f}, {d.watermark.num_frames} frames; "
        f"metadata tag {'found' if d.tag else 'not found'}; {c2pa}"
    )
    return 0
