"""End to end in a real browser: ``agegender serve`` on a loopback port, the upload page in headless Debian
Chromium (playwright), a photo uploaded, the drawn result checked; screenshot in test-artifacts/."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers_models import grace_hopper_path, write_tiny_package

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{proc.stderr.read() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if json.loads(r.read())["status"] == "ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise TimeoutError(f"the server did not answer {url}/healthz within {timeout} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``agegender serve`` (the real CLI) in a subprocess on a free loopback port."""
    model = write_tiny_package(tmp_path_factory.mktemp("browser-model") / "tiny-face.safetensors", "face")
    port = _free_port()
    # cli_serve registers the command on the main app (until agegender.cli imports it itself)
    code = "import agegender.cli_serve; from agegender.cli import main; main()"
    env = {**os.environ, "AGEGENDER_TIMEOUT_S": "60"}
    log = tmp_path_factory.mktemp("browser-log") / "server.log"
    with open(log, "w") as log_fp:
        proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--model", str(model), "--port", str(port),
                                 "--threads", "1", "--log-level", "warning"],
                                stdout=log_fp, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                _wait_ready(url, proc)
            except (RuntimeError, TimeoutError) as e:
                raise RuntimeError(f"{e}\n{log.read_text()}") from None
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="module")
def playwright() -> Iterator[object]:
    with sync_api.sync_playwright() as p:  # one per module: the sync API cannot nest two
        yield p


@pytest.fixture(scope="module")
def browser(playwright: object) -> Iterator[object]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,  # type: ignore[attr-defined]
                                   headless=True)
    try:
        yield b
    finally:
        b.close()


def test_upload_photo_shows_boxes_and_table(server: str, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
    page.set_default_timeout(20_000)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(server + "/")
    page.wait_for_selector("#model:has-text('tiny-face')")
    page.set_input_files("#file", str(grace_hopper_path()))
    page.wait_for_selector("#results tbody tr.person")

    rows = page.locator("#results tbody tr.person")
    assert rows.count() == 1  # Haar finds Grace Hopper's face
    row = rows.first
    assert row.get_attribute("data-gender") in ("male", "female")
    age = float(row.get_attribute("data-age") or "nan")
    assert 0 <= age <= 120
    cells = row.locator("td").all_inner_texts()
    assert re.fullmatch(r"(male|female)\s*\d+%", cells[1].strip()), cells  # label and its probability
    assert any(ch.isdigit() for ch in cells[2])  # age in years with its interval
    assert re.search(r"under 18: \d+%", row.locator("td").nth(2).get_attribute("title") or "")  # and P(minor)
    assert "1 person" in page.inner_text("#status")

    # the photo is drawn with the box: the canvas has the photo's aspect and the box colour on the box edge
    size = page.evaluate("() => { const c = document.getElementById('view'); return [c.width, c.height]; }")
    assert size[0] > 100 and abs(size[1] / size[0] - 600 / 512) < 0.02
    # pixels of the first box colour (#2f6fde, from app.js) — the photo itself has almost none
    box_pixels = page.evaluate("""() => {
        const c = document.getElementById('view');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
            if (Math.abs(d[i] - 47) < 12 && Math.abs(d[i + 1] - 111) < 12 && Math.abs(d[i + 2] - 222) < 12) n++;
        return n; }""")
    assert box_pixels > 500

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "serve_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    assert not errors, errors
    outside = [u for u in requested if not u.startswith((server, "blob:", "data:"))]
    assert not outside, f"the page fetched from outside the server (must work offline): {outside}"
    page.close()


def test_bad_upload_shows_the_error(server: str, browser: object, tmp_path: Path) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.set_default_timeout(20_000)
    page.goto(server + "/")
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo at all")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error")
    assert "unsupported_media_type" in page.inner_text("#status")
    page.close()


def test_docs_render_offline(server: str, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.set_default_timeout(20_000)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(server + "/docs")
    # Swagger UI (when a local copy is installed) or the built-in reference: either lists the operations
    page.wait_for_selector(".opblock-summary-path, #api section h2")
    assert "/v1/predict" in page.inner_text("body")
    assert all(u.startswith((server, "data:", "blob:")) for u in requested), requested
    page.close()


def test_camera_picture_is_analysed(server: str, playwright: object) -> None:
    """getUserMedia with Chromium's fake camera (a test pattern: nobody in it) → picture → answer shown."""
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)  # type: ignore[attr-defined]
    try:
        page = b.new_context(permissions=["camera"]).new_page()
        page.set_default_timeout(20_000)
        page.goto(server + "/")
        page.click("#camera-start")
        page.wait_for_function("() => document.getElementById('video').videoWidth > 0")
        page.click("#camera-shoot")
        page.wait_for_selector("#status.done")
        assert page.inner_text("#status").startswith("camera.jpg:")
        page.click("#camera-stop")
        assert page.is_hidden("#video")
    finally:
        b.close()
