"""Fixtures for `edgeport serve`: run folders with browser exports (MNIST digits, and generated RGB images with
named classes), the server on a free port, and chromium.

Browser tests drive Debian's chromium (`apt-get install chromium`, never a Playwright browser download)
through Playwright, and need the browser runtimes (web/node_modules: `npm ci` in web/, done by `make setup`).
Without either they skip, saying which is missing; .ci/run installs chromium and `make test` runs `npm ci`,
so CI runs them.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

WEB_TARGETS = ("onnx_fp32", "tflite_int8", "web_tflite_fp32", "web_tflite_int8")
RGB_TARGETS = ("onnx_fp32", "web_tflite_fp32", "web_tflite_int8")
RGB_LABELS = ("red", "green", "blue")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic",  # no reaching for hosts it cannot reach
                  "--use-fake-device-for-media-stream",  # a generated camera picture (a test pattern)...
                  "--use-fake-ui-for-media-stream"]  # ... and the camera permission granted without a prompt


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


def colour_images(n: int, size: tuple[int, int], rng) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 (H, W, 3) noise images, each with one channel lifted: class 0 red, 1 green, 2 blue."""
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 90, (n, *size, 3))
    x[np.arange(n), :, :, y] += rng.integers(110, 166, n)[:, None, None]
    return x.astype(np.uint8), y


@pytest.fixture(scope="session")
def rgb_run(tmp_path_factory) -> Path:
    """The tiny CNN, one epoch on a generated .npz of 32x32 RGB images in three named classes (red, green, blue:
    the channel that is lifted), preprocessing `resize` with centre-`crop`, exported for the browser."""
    pytest.importorskip("tensorflow")
    from edgeport.core.data import DataConfig
    from edgeport.export.export import ExportConfig, export_run
    from edgeport.train.fit import TrainConfig, train

    root = tmp_path_factory.mktemp("rgb_run")
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = colour_images(600, (32, 32), rng), colour_images(200, (32, 32), rng)
    np.savez(root / "colours.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             labels=np.array(RGB_LABELS))
    run = root / "run"
    train(TrainConfig(model="tiny", epochs=1, batch_size=32,
                      data=DataConfig(path=str(root / "colours.npz"), resize="crop")), run)
    export_run(run, ExportConfig(targets=RGB_TARGETS, calibration_size=64, validation_size=64))
    return run


@pytest.fixture(scope="session")
def web_app(web_run):
    pytest.importorskip("fastapi")
    from edgeport.serve import ServeConfig, create_app

    return create_app(web_run, ServeConfig())


@contextlib.contextmanager
def serving(app):
    """`app` served by uvicorn in a thread on a free loopback port; yields its base URL."""
    uvicorn = pytest.importorskip("uvicorn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def server_url(web_app) -> str:
    """The MNIST run's page."""
    with serving(web_app) as url:
        yield url


@pytest.fixture(scope="session")
def rgb_server_url(rgb_run) -> str:
    """The RGB run's page."""
    pytest.importorskip("fastapi")
    from edgeport.serve import ServeConfig, create_app

    with serving(create_app(rgb_run, ServeConfig())) as url:
        yield url


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium under Playwright; skips with the reason when something is missing."""
    from edgeport.serve import VENDOR_DIR, vendor_status

    missing = [reason for reason in vendor_status(VENDOR_DIR).values() if reason]
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


def new_page(browser, init_script: str | None = None, **context_args):
    """A page in a fresh context; its uncaught errors are collected in page.errors, every URL it requests in
    page.requests. `init_script` runs before the page's own scripts (to take the camera away, say)."""
    context = browser.new_context(**({"viewport": {"width": 1000, "height": 900}} | context_args))
    if init_script:
        context.add_init_script(init_script)
    p = context.new_page()
    p.errors = []
    p.requests = []
    p.on("pageerror", lambda e: p.errors.append(str(e)))
    p.on("request", lambda r: p.requests.append(r.url))
    return p


@pytest.fixture
def page_factory(browser):
    """new_page(browser, ...) for tests that need a context of their own; closes what it made."""
    pages = []

    def make(init_script: str | None = None, **context_args):
        pages.append(new_page(browser, init_script, **context_args))
        return pages[-1]

    yield make
    for p in pages:
        p.context.close()


@pytest.fixture
def colour_files(tmp_path) -> list[Path]:
    """Six colour images like the RGB run's, at an odd size (53x41, so the page resizes them), as PNG files."""
    from PIL import Image

    images, _ = colour_images(6, (41, 53), np.random.default_rng(42))
    paths = []
    for i, x in enumerate(images):
        paths.append(tmp_path / f"colour-{i}.png")
        Image.fromarray(x).save(paths[-1])
    return paths


@pytest.fixture
def page(browser):
    """A fresh page (see new_page)."""
    p = new_page(browser)
    yield p
    p.context.close()
