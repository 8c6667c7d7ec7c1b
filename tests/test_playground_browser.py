"""The playground in a real headless Chromium: pick data, train to 95 %, add a point, switch backend, explain.

The screenshot taken mid-training goes to $XPNET_PLAYGROUND_SCREENSHOT when set
(the README's picture: XPNET_PLAYGROUND_SCREENSHOT=docs/playground.png python -m
pytest tests/test_playground_browser.py), else into the test's temporary folder.
"""
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("starlette", reason="the playground needs pip install -e '.[playground]'")
uvicorn = pytest.importorskip("uvicorn", reason="the playground needs pip install -e '.[playground]'")
playwright = pytest.importorskip("playwright.sync_api", reason="the browser test drives Chromium with playwright "
                                                                "(in the dev extra)")

import xpnet as xn  # noqa: E402
from xpnet.playground import server  # noqa: E402

# A closed network refuses Chromium's background connections; these flags keep it from trying.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture
def url():
    """The playground served by uvicorn on a free port of 127.0.0.1, for the test's duration."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(server.create_app("numpy"), ws_max_size=server.MAX_MESSAGE, log_level="warning")
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not web.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    web.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def page():
    with playwright.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                       viewport={"width": 1280, "height": 820})
        yield browser.new_page()
        browser.close()


def number(page, selector):
    return float(page.inner_text(selector).replace(",", ""))


def test_train_add_a_point_switch_backend_and_explain(url, page, tmp_path):
    other = next((name for name in ("array_api_strict", "numba") if name in xn.backends.available()), None)
    page.goto(url)
    page.wait_for_function("document.getElementById('status').textContent === 'paused'")
    page.select_option("#dataset", "moons")
    page.select_option("#dataset", "spirals")
    page.wait_for_function("document.getElementById('point-count').textContent === '500'")

    page.click("#train")
    page.wait_for_function("parseFloat(document.getElementById('val-accuracy').textContent) >= 0.95", timeout=40_000)
    shot = Path(os.environ.get("XPNET_PLAYGROUND_SCREENSHOT") or tmp_path / "playground.png")
    page.screenshot(path=str(shot))  # mid-training: the README's picture
    assert shot.stat().st_size > 10_000
    assert number(page, "#epoch") > 0 and number(page, "#speed") > 0

    corner = {"x": 405, "y": 15}  # near the top-right corner of the 420 px plane: no spiral reaches it
    page.click("#plane", position=corner)
    page.wait_for_function("document.getElementById('point-count').textContent === '501'")

    if other is not None:
        page.select_option("#backend", other)
        page.wait_for_function(f"document.getElementById('backend-name').textContent === '{other}'")
    page.click("#pause")
    page.wait_for_function("document.getElementById('status').textContent === 'paused'")
    page.click("#plane", position=corner)  # paused: a click on a point explains it
    page.wait_for_function("document.getElementById('trace').textContent.includes('BP4')")
    trace = page.inner_text("#trace")
    assert trace.startswith("point 500: x = (1.48, 1.48), class 1")  # 1 px of border: (404, 14) on the canvas
    assert all(f" {tag} " in trace for tag in ("BP1", "BP2", "BP3", "BP4"))
    assert f"on {other or 'numpy'} (float32)" in trace
    assert page.inner_text("#point-count") == "501"  # explaining added nothing
    page.screenshot(path=str(tmp_path / "explained.png"))
