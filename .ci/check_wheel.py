"""The wheel as a user gets it, end to end: `.venv/bin/python .ci/check_wheel.py [RUN_DIR]` after `make setup`.

1. builds the wheel (pip, build isolation) from a copy of the project, so no stale build/ can hide a missing file;
2. installs `edgeport-*.whl[serve]` into a fresh venv in a temporary folder outside the checkout, dependencies
   from the package registry;
3. makes a small RGB run with the checkout's venv (unless RUN_DIR is given): the tiny CNN, one epoch on a
   generated .npz of 32x32 colour images in three named classes, exported to onnx_fp32, web_tflite_fp32 and
   web_tflite_int8 (`edgeport train` + `edgeport export`);
4. starts the installed `edgeport serve RUN_DIR` from that temporary folder, fetches the page, its scripts, both
   runtimes' .wasm (compared byte for byte with web/node_modules) and /api/artifacts;
5. where chromium is installed, opens the page headless (Playwright from the checkout's venv), classifies an image
   file and runs `?parity=50` on every artifact.
Prints each step's time; exits non-zero on the first failure. tests/web/test_wheel.py checks the same wheel's files
and layout within the test suite; this script is the slower, complete version (CI runs it after the tests).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("edgeport", "train", "export", "runtime", "pyproject.toml", "setup.py", "README.md", "web/package.json",
           "web/package-lock.json")
NODE_MODULES = REPO / "web" / "node_modules"
VENV_BIN = Path(sys.executable).parent  # the checkout's venv (make setup): edgeport, playwright
WASM = {"ort/ort-wasm-simd-threaded.wasm": "onnxruntime-web/dist/ort-wasm-simd-threaded.wasm",
        "litert/wasm/litert_wasm_internal.wasm": "@litertjs/core/wasm/litert_wasm_internal.wasm"}
T0 = time.monotonic()


def step(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {text}", flush=True)


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if done.returncode != 0:
        sys.exit(f"check-wheel: {' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done


def build_wheel(work: Path) -> Path:
    project = work / "project"
    for rel in PROJECT:
        src, dst = REPO / rel, project / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "vendor", "*.egg-info"))
        else:
            shutil.copy2(src, dst)
    (project / "web" / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", project, "-w", work / "dist", cwd=work)
    (whl,) = (work / "dist").glob("edgeport-*.whl")
    return whl


def make_run(work: Path) -> Path:
    rng = np.random.default_rng(0)

    def colours(n):
        y = rng.integers(0, 3, n)
        x = rng.integers(0, 90, (n, 32, 32, 3))
        x[np.arange(n), :, :, y] += rng.integers(110, 166, n)[:, None, None]
        return x.astype(np.uint8), y

    (xtr, ytr), (xte, yte) = colours(600), colours(200)
    np.savez(work / "colours.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte,
             labels=np.array(["red", "green", "blue"]))
    run_dir = work / "run"
    run(VENV_BIN / "edgeport", "train", "--model", "tiny", "--data", work / "colours.npz", "--epochs", "1",
        "--batch-size", "32", "--out", run_dir, cwd=work)
    run(VENV_BIN / "edgeport", "export", run_dir, "--targets", "onnx_fp32,web_tflite_fp32,web_tflite_int8", cwd=work)
    return run_dir


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.headers.get("content-type", ""), r.read()


def browser_check(url: str, work: Path) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        step("chromium not found: browser check skipped")
        return
    red = np.random.default_rng(1).integers(0, 90, (45, 61, 3))
    red[..., 0] += 150
    Image.fromarray(red.astype(np.uint8)).save(work / "red.png")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("document.body.dataset.ready !== undefined", timeout=60_000)
        page.set_input_files("#file", str(work / "red.png"))
        page.wait_for_function("window.lastPrediction", timeout=60_000)
        top = page.evaluate("window.lastPrediction.top")
        step(f"page: red.png -> {top[0]['label']} {top[0]['probability']:.2f}")
        page.goto(url + "?parity=50")
        page.wait_for_function("window.parityResults !== undefined", timeout=180_000)
        res = page.evaluate("window.parityResults")
        browser.close()
    problem = res.get("error") or res.get("errors") or errors or (len(res["results"]) != 3 and res["results"].keys())
    if problem:
        sys.exit(f"check-wheel: the page failed: {problem}")
    step("page parity: " + ", ".join(f"{k} {v['accuracy']:.0%} median {v['median_ms']:.2f} ms"
                                     for k, v in res["results"].items()))


def main(argv: list[str]) -> None:
    missing = [p for p in WASM.values() if not (NODE_MODULES / p).is_file()]
    if missing:
        sys.exit(f"check-wheel: {NODE_MODULES / missing[0]} is missing: run `make setup` (npm ci in web/) first")
    with tempfile.TemporaryDirectory(prefix="edgeport-wheel-") as tmp:
        work = Path(tmp)
        runs = ThreadPoolExecutor(1)  # the run is made (TensorFlow, the checkout's venv) while pip installs
        made = runs.submit(lambda: Path(argv[0]).resolve() if argv else make_run(work))
        whl = build_wheel(work)
        step(f"built {whl.name}: {whl.stat().st_size / 1e6:.1f} MB")
        run("python3", "-m", "venv", "--without-pip", work / "venv")  # pip --python installs into it: no ensurepip
        run(sys.executable, "-m", "pip", "--python", work / "venv" / "bin" / "python", "install", "-q",
            "--disable-pip-version-check", f"{whl}[serve]", cwd=work)
        where = run(work / "venv" / "bin" / "python", "-c", "import edgeport.serve as s; print(s.__file__)", cwd=work)
        step(f"installed into a fresh venv: {where.stdout.strip()}")
        assert where.stdout.startswith(str(work / "venv")), where.stdout
        run_dir = made.result()
        runs.shutdown()
        step(f"run: {run_dir}")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}/"
        server = subprocess.Popen([work / "venv" / "bin" / "edgeport", "serve", run_dir, "--port", str(port)],
                                  cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    status, _, page = get(url)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        sys.exit(f"check-wheel: edgeport serve did not start:\n{server.stdout.read()}")
                    time.sleep(0.5)
            assert status == 200 and b'id="image-ui"' in page, status
            for name in ("app.js", "preprocess.js", "style.css"):
                status, ctype, _ = get(url + "static/" + name)
                assert status == 200 and ("javascript" in ctype or "css" in ctype), (name, status, ctype)
            for route, src in WASM.items():
                status, ctype, body = get(url + "vendor/" + route)
                want = hashlib.sha256((NODE_MODULES / src).read_bytes()).hexdigest()
                assert (status, ctype, hashlib.sha256(body).hexdigest()) == (200, "application/wasm", want), route
            arts = json.loads(get(url + "api/artifacts")[2])
            assert arts["artifacts"] and all(a["runnable"] for a in arts["artifacts"]), arts
            step(f"edgeport serve (installed) serves the page, scripts, both runtimes' .wasm; runnable: "
                 f"{', '.join(a['name'] for a in arts['artifacts'])}; runtimes {arts['runtimes']}")
            browser_check(url, work)
        finally:
            server.terminate()
            server.wait(timeout=30)
    step("check-wheel: ok")


if __name__ == "__main__":
    main(sys.argv[1:])
