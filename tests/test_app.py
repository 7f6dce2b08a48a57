"""``vasajax app`` in a real browser: Debian's headless Chromium driven by Playwright.

The page is served in-process on a free localhost port with a random-init tiny export. A person's steps: open
the page, drop the bundled portrait and a short speech clip, press Animate, see preview frames arrive while the
video is generated, download the mp4 and check its frames, sound and watermark (the same video the CLI writes);
a photo without a face shows the CLI's one-line error. Skipped without Chromium or the ``app`` extra
(``make test`` installs both).
"""

import os
import re
import shutil
import socket
import time

import numpy as np
import pytest
import soundfile as sf

from test_animate_cli import needs_landmarker
from test_pipeline import make_export
from vasajax import detect, media
from vasajax.image import ASSETS, PORTRAITS
from vasajax.motion.audio import num_video_frames

CHROMIUM = os.environ.get("VASAJAX_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
try:
    import gradio  # noqa: F401
    from playwright import sync_api

    missing = None if os.path.exists(CHROMIUM) else "no chromium (apt-get install chromium)"
except ImportError as e:
    missing = f"{e.name} is not installed: pip install -e '.[test,app]'"
if missing:
    if os.environ.get("VASAJAX_TEST_BROWSER") == "required":  # .ci/run: `make test` installs it, so it must run
        raise RuntimeError(f"tests/test_app.py cannot run: {missing}")
    pytest.skip(missing, allow_module_level=True)
pytestmark = needs_landmarker
SR = 16_000
SPEECH_S = 1.2
TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("app")
    wave, sr = sf.read(ASSETS / "demo_speech.wav", dtype="float32")
    assert sr == SR
    sf.write(d / "speech.wav", wave[int(0.3 * SR) : int((0.3 + SPEECH_S) * SR)], SR)  # starts in speech
    import PIL.Image

    PIL.Image.new("RGB", (256, 256), (120, 140, 160)).save(d / "noface.png")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))
    sf.write(d / "silence.wav", np.zeros(int(0.5 * SR), np.float32), SR)
    return d, make_export(d / "ckpt")


@pytest.fixture(scope="module")
def url(files):
    from vasajax import app

    page = app.build(str(files[1]))
    port = free_port()
    page.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    page.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])  # CI runs as root
        yield b
        b.close()


@pytest.fixture
def page(browser, url):
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(url)
    yield pg
    context.close()


WATCH = """() => {  // every preview picture the page shows, with the status line at that moment
    window.previews = [];
    new MutationObserver(() => {
        const img = document.querySelector('#preview img');
        const status = document.querySelector('#status textarea')?.value || '';
        if (img && img.src && (window.previews.at(-1)?.src !== img.src)) window.previews.push({src: img.src, status});
    }).observe(document.querySelector('#preview'), {subtree: true, childList: true, attributes: true});
}"""


def status(pg) -> str:
    return pg.locator("#status textarea").input_value()


def test_page_animates_photo_with_streamed_preview_and_downloads_watermarked_mp4(page, files, tmp_path, monkeypatch):
    d, ckpt = files
    write = media.VideoWriter.write
    monkeypatch.setattr(media.VideoWriter, "write", lambda w, x: (time.sleep(0.3), write(w, x)))  # a slow machine
    page.locator("#image input[type=file]").set_input_files(str(PORTRAITS["astronaut"]))
    page.locator("#audio input[type=file]").set_input_files(str(d / "speech.wav"))
    page.locator("#image img").wait_for()
    page.locator("#audio audio").first.wait_for(state="attached")  # both uploads done
    # pasted back into the 512² photo: the tiny model's 64² crop is below the watermark's smallest detectable frame
    # (provenance: 96 px), a real model's 256² output is not
    page.locator("#paste input[type=checkbox]").check()
    page.evaluate(WATCH)
    page.locator("#run").click()
    link = page.locator("#download a[download]").first
    link.wait_for()
    assert "frames" in status(page) and "watermarked" in status(page), status(page)
    previews = page.evaluate("window.previews")
    during = [p for p in previews if p["status"].startswith("frame ")]
    assert len(during) >= 2, previews  # frames were shown while the video was being made, not only at the end
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    with page.expect_download() as dl:
        link.click()
    out = tmp_path / "page.mp4"
    dl.value.save_as(out)

    wave, _ = sf.read(d / "speech.wav", dtype="float32")
    T = num_video_frames(wave.size, 25, SR)
    frames, fps, audio = media.read_video(out, stack=True)
    assert fps == 25 and len(frames) == T and frames.std() > 5  # a picture, not a blank
    assert audio is not None and abs(audio.size - wave.size) <= 0.05 * SR
    found = detect.detect_video(out)
    assert found.present and found.tag and found.watermark.present
    from vasajax import cli

    cli_out = tmp_path / "cli.mp4"  # the CLI, same inputs and defaults: the same video
    args = ["--image", str(PORTRAITS["astronaut"]), "--audio", str(d / "speech.wav"), "--paste-back"]
    assert cli.main(["animate", *args, "--out", str(cli_out), "--checkpoint", str(ckpt), "--no-progress"]) == 0
    cli_frames, _, _ = media.read_video(cli_out, stack=True)
    assert cli_frames.shape == frames.shape
    assert np.abs(cli_frames.astype(int) - frames).mean() < 1.0


BAD = {  # what the page's status box shows: the CLI's line
    "no face": ("noface.png", "speech.wav", "error: no face found"),
    "corrupt photo": ("corrupt.jpg", "speech.wav", "error: cannot read .* as an image"),
    "silent speech": ("astronaut", "silence.wav", "warning: the audio is silent"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_shows_the_cli_message(page, files, case):
    d, _ = files
    photo, speech, pattern = BAD[case]
    page.locator("#image input[type=file]").set_input_files(str(PORTRAITS.get(photo, d / photo)))
    page.locator("#audio input[type=file]").set_input_files(str(d / speech))
    page.locator("#audio audio").first.wait_for(state="attached")
    page.locator("#run").click()
    page.wait_for_function("/^(error|warning): /.test(document.querySelector('#status textarea').value)")
    line = status(page).splitlines()[0]
    assert re.match(pattern, line), status(page)
    if pattern.startswith("error"):
        assert status(page) == line and page.locator("#download a[download]").count() == 0
