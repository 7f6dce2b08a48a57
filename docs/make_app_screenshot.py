"""Screenshot of ``vasajax app`` after a generation, and its latency as a person sees it:
``python docs/make_app_screenshot.py docs/app.png [--checkpoint DIR] [--seconds S] [--warm-up]``.

Serves the page on a free localhost port, opens it in Debian's headless Chromium (Playwright), drops the bundled
portrait and the first S seconds of the bundled speech, presses Animate twice (cold: XLA compiles during the
first; warm: the second) and prints, per press, the seconds from the click to the first preview frame in the
page and to the download link. The screenshot is taken after the second generation.
"""

import argparse
import socket
import tempfile
import time
from pathlib import Path

import soundfile as sf
from playwright.sync_api import sync_playwright

from vasajax import app
from vasajax.image import ASSETS, PORTRAITS


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--checkpoint")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warm-up", action="store_true", help="compile before serving, as `vasajax app` does")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    wave, sr = sf.read(ASSETS / "demo_speech.wav", dtype="float32")
    sf.write(tmp / "speech.wav", wave[: int(args.seconds * sr)], sr)
    page = app.build(args.checkpoint)
    if args.warm_up:
        anim = app.animator(str(app.pipeline.resolve_checkpoint(args.checkpoint)))
        print(f"warm-up: {anim.warm_up(anim.prepare(PORTRAITS['astronaut'], crop='center')):.1f} s")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            pg = browser.new_page(viewport={"width": 1280, "height": 1000})
            pg.set_default_timeout(600_000)
            pg.goto(f"http://127.0.0.1:{port}/")
            pg.locator("#image input[type=file]").set_input_files(str(PORTRAITS["astronaut"]))
            pg.locator("#audio input[type=file]").set_input_files(str(tmp / "speech.wav"))
            pg.locator("#audio audio").first.wait_for(state="attached")
            for run in ("cold", "warm"):
                before = pg.evaluate("document.querySelector('#preview img')?.src || ''")
                t0 = time.perf_counter()
                pg.locator("#run").click()
                pg.wait_for_function(
                    "b => { const i = document.querySelector('#preview img'); return i && i.src && i.src !== b }",
                    arg=before,
                )
                t1 = time.perf_counter()
                pg.wait_for_function("document.querySelector('#status textarea').value.includes('watermarked')")
                t2 = time.perf_counter()
                status = pg.locator("#status textarea").input_value()
                print(f"{run}: first preview frame {t1 - t0:.2f} s after the click, video ready after {t2 - t0:.2f} s")
                print(f"  status: {status}")
            pg.wait_for_timeout(500)
            pg.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        page.close()


if __name__ == "__main__":
    main()
