"""Write a frame strip (PNG) of a video: ``python docs/make_strip.py out/demo.mp4 docs/demo_strip.png [N]``.

Used for the README's picture of ``make demo``; N frames evenly spaced over the video, side by side.
"""

import sys

import numpy as np
from PIL import Image

from vasajax.eval.report import read_video


def main(src: str, dst: str, n: int = 8) -> None:
    frames, _ = read_video(src)
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    Image.fromarray(np.concatenate([frames[i] for i in idx], axis=1)).save(dst, optimize=True)
    print(f"wrote {dst}: frames {idx.tolist()} of {len(frames)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 8)
