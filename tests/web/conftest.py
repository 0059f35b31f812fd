"""Fixtures for `edgeport serve`: a run folder with browser exports, the server on a free port, and chromium.

Browser tests drive Debian's chromium (`apt-get install chromium`, never a Playwright browser download)
through Playwright, and need web/node_modules (`npm ci` in web/, done by `make setup`). Without either
they skip, saying which is missing; .ci/run installs chromium and `make test` runs `npm ci`, so CI runs them.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

WEB_TARGETS = ("onnx_fp32", "tflite_int8", "web_tflite_fp32", "web_tflite_int8")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"]  # no reaching for hosts it cannot reach


@pytest.fixture(scope="session")
def web_run(seed_run, tmp_path_factory) -> Path:
    """The session's seed model (~98%, good enough to read stroke-drawn digits), exported to ONNX, the
    default int8 TFLite and the two browser TFLite targets in a run folder of its own."""
    from edgeport.export.export import ExportConfig, export_run

    run = tmp_path_factory.mktemp("web_run")
    for name in ("model.keras", "train.json", "reference.npz"):
        shutil.copy2(seed_run / name, run / name)
    export_run(run, ExportConfig(targets=WEB_TARGETS, calibration_size=100, validation_size=64))
    return run


@pytest.fixture(scope="session")
def web_app(web_run):
    pytest.importorskip("fastapi")
    from edgeport.serve import ServeConfig, create_app

    return create_app(web_run, ServeConfig())


@pytest.fixture(scope="session")
def server_url(web_app) -> str:
    """The app served by uvicorn in a thread on a free loopback port."""
    uvicorn = pytest.importorskip("uvicorn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(web_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium under Playwright; skips with the reason when something is missing."""
    from edgeport.serve import WEB_DIR, vendor_status

    missing = [reason for reason in vendor_status(WEB_DIR).values() if reason]
    if missing:
        pytest.skip(f"browser runtimes not installed: {missing[0]}")
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not found: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page; its uncaught errors are collected in page.errors, every URL it requests in page.requests."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    p = context.new_page()
    p.errors = []
    p.requests = []
    p.on("pageerror", lambda e: p.errors.append(str(e)))
    p.on("request", lambda r: p.requests.append(r.url))
    yield p
    context.close()
