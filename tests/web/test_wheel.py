"""The built wheel carries the page and the browser runtimes it loads, and `edgeport serve` finds them in the
installed package layout, with no source checkout. The wheel is built (pip, build isolation, setuptools from the
package registry) from a copy of the project in a temporary folder, so no stale build/ can hide a missing file.

The full check (a fresh venv outside the checkout, `pip install 'edgeport-*.whl[serve]'` from the registry, the
`edgeport serve` command, a browser running the models) is .ci/check-wheel, too slow for the suite."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgeport.serve import PAGE_DIR, VENDOR, VENDOR_DIR, vendor_status

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "web" / "node_modules"  # what npm ci installed in this checkout
PROJECT = ("edgeport", "train", "export", "runtime", "pyproject.toml", "setup.py", "README.md", "web/package.json",
           "web/package-lock.json")


def project_copy(dest: Path, node_modules: bool = True) -> Path:
    """The files a wheel is built from, copied (node_modules linked) into `dest`."""
    for rel in PROJECT:
        src, dst = REPO / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "vendor", "*.egg-info"))
        else:
            shutil.copy2(src, dst)
    if node_modules:
        (dest / "web" / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    return dest


def build_wheel(project: Path, out: Path, isolated: bool = True) -> subprocess.CompletedProcess:
    """`pip wheel` of `project`; isolated: setuptools from the package registry, as a user's build gets it."""
    flags = [] if isolated else ["--no-build-isolation"]
    return subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *flags, str(project), "-w",
                           str(out)], capture_output=True, text=True, timeout=600, cwd=out.parent)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    missing = [r for r in vendor_status(NODE_MODULES).values() if r]
    if missing:
        pytest.skip(f"browser runtimes not installed: {missing[0]}")
    tmp = tmp_path_factory.mktemp("wheel")
    done = build_wheel(project_copy(tmp / "project"), tmp / "dist")
    assert done.returncode == 0, done.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("edgeport-*.whl")
    print(f"wheel {whl.name}: {whl.stat().st_size / 1e6:.1f} MB")
    return whl


def test_the_checkout_serves_web_node_modules():
    """An editable install (as make setup makes) has no edgeport/web/vendor/: it serves web/node_modules."""
    if PAGE_DIR != REPO / "edgeport" / "web":
        pytest.skip(f"edgeport is imported from {PAGE_DIR.parent}, not installed editable from this checkout")
    assert VENDOR_DIR == NODE_MODULES


def test_wheel_holds_the_page_and_exactly_the_runtime_files_the_page_loads(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        web = {n for n in names if n.startswith("edgeport/web/")}
        page = {f"edgeport/web/{n}" for n in ("index.html", "app.js", "preprocess.js", "style.css", "vendor.json")}
        runtimes = {f"edgeport/web/vendor/{rt.package}/{Path(rt.folder, f).as_posix()}"
                    for rt in VENDOR.values() for f in rt.files}
        licences = {f"edgeport/web/vendor/{rt.package}/package.json" for rt in VENDOR.values()}
        assert web == page | runtimes | licences, sorted(web ^ (page | runtimes | licences))
        for name in runtimes | licences:  # byte for byte what npm installed
            src = NODE_MODULES / name.removeprefix("edgeport/web/vendor/")
            assert sha256(z.read(name)) == sha256(src.read_bytes()), name
        for name in page:
            assert z.read(name) == (REPO / name).read_bytes(), name
        assert {"edgeport/serve.py", "edgeport/runtime/__init__.py", "edgeport/core/spec.py"} <= names


def test_serve_finds_its_files_in_the_installed_layout(wheel, rgb_run, tmp_path):
    """The wheel unpacked as site-packages would hold it, imported from there (not from this checkout): the app
    serves the page, its scripts and a runtime .wasm, and calls every artifact runnable in the browser."""
    pytest.importorskip("fastapi")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    wasm = NODE_MODULES / "onnxruntime-web" / "dist" / "ort-wasm-simd-threaded.wasm"
    script = f"""
import hashlib, json, sys
import edgeport.serve as serve
from fastapi.testclient import TestClient
site = {str(site)!r}
assert serve.__file__.startswith(site), serve.__file__
assert str(serve.PAGE_DIR).startswith(site) and str(serve.VENDOR_DIR).startswith(site), serve.VENDOR_DIR
assert not any(serve.vendor_status(serve.VENDOR_DIR).values()), serve.vendor_status(serve.VENDOR_DIR)
with TestClient(serve.create_app({str(rgb_run)!r})) as c:
    page = c.get("/")
    js = c.get("/static/app.js")
    wasm = c.get("/vendor/ort/ort-wasm-simd-threaded.wasm")
    arts = c.get("/api/artifacts").json()
print(json.dumps({{"page": [page.status_code, 'id="image-ui"' in page.text], "js": js.status_code,
                  "wasm": [wasm.status_code, wasm.headers["content-type"], hashlib.sha256(wasm.content).hexdigest()],
                  "runnable": [a["runnable"] for a in arts["artifacts"]], "runtimes": arts["runtimes"]}}))
"""
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["page"] == [200, True] and got["js"] == 200
    assert got["wasm"] == [200, "application/wasm", sha256(wasm.read_bytes())]
    assert got["runnable"] and all(got["runnable"]), got
    assert all(got["runtimes"].values()), got["runtimes"]


def test_wheel_build_stops_without_the_runtimes(tmp_path):
    """No web/node_modules: the build fails and says how to get the runtimes, instead of shipping a page that
    cannot run a model."""
    isolated = importlib.util.find_spec("setuptools") is None  # the installed setuptools runs setup.py faster
    done = build_wheel(project_copy(tmp_path / "project", node_modules=False), tmp_path / "dist", isolated)
    assert done.returncode != 0
    assert "npm ci" in done.stderr and "web/node_modules" in done.stderr, done.stderr[-3000:]
    assert not list((tmp_path / "dist").glob("*.whl")) if (tmp_path / "dist").exists() else True
