"""web/public/preprocess.js (run with node) gives the same 28x28 pixels as edgeport/core/images.py, on drawings
of many sizes, aspect ratios, stroke widths and both ink polarities. No browser needed, only node."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import numpy as np
import pytest

from edgeport.serve import WEB_DIR

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node not found (it comes with npm: apt-get install nodejs npm)")

SCRIPT = """
import { mnistPreprocess, toModelInput } from %s;
import fs from 'fs';
const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const out = cases.map(({ w, h, rgba }) => {
  const r = mnistPreprocess(new Uint8Array(Buffer.from(rgba, 'base64')), w, h);
  return r === null ? null : Array.from(r.image);
});
const x = toModelInput(Uint8Array.from([0, 1, 127, 128, 254, 255]), 0.1307, 0.3081);
console.log(JSON.stringify({ out, normalised: Array.from(x) }));
"""


def drawings(n: int = 24):
    """Random polyline 'digits' drawn with Pillow: various canvases, widths, positions and polarities."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(7)
    for i in range(n):
        w, h = int(rng.integers(40, 400)), int(rng.integers(40, 400))
        light_page = i % 3 != 0
        page, ink = ((255, 255, 255), (0, 0, 0)) if light_page else ((0, 0, 0), (255, 255, 255))
        if i % 5 == 0:  # grey paper, grey ink
            page, ink = ((200, 190, 180), (60, 50, 70)) if light_page else ((30, 30, 30), (220, 220, 220))
        im = Image.new("RGB", (w, h), page)
        corners = int(rng.integers(2, 6))
        points = [(float(rng.uniform(0.1, 0.9) * w), float(rng.uniform(0.1, 0.9) * h)) for _ in range(corners)]
        if i % 4 == 0:  # a thin line: the tall-and-narrow resize path
            points = [(w / 2, 0.1 * h), (w / 2 + 1, 0.9 * h)]
        ImageDraw.Draw(im).line(points, fill=ink, width=int(rng.integers(2, max(3, min(w, h) // 8))), joint="curve")
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3))))  # soft edges, like a canvas stroke
        yield im.convert("RGBA")


def test_js_preprocessing_matches_python(tmp_path):
    from edgeport.core.images import load_image, mnist_preprocess

    images = list(drawings())
    cases, expected = [], []
    for i, im in enumerate(images):
        path = tmp_path / f"d{i}.png"
        im.save(path)
        cases.append({"w": im.width, "h": im.height, "rgba": base64.b64encode(im.tobytes()).decode()})
        expected.append(mnist_preprocess(load_image(path)))
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = tmp_path / "run.mjs"
    script.write_text(SCRIPT % json.dumps((WEB_DIR / "public" / "preprocess.js").as_uri()))
    done = subprocess.run([NODE, str(script), str(tmp_path / "cases.json")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for i, (got, want) in enumerate(zip(result["out"], expected, strict=True)):
        assert got is not None, f"drawing {i}: JS found no ink"
        got = np.asarray(got).reshape(28, 28)
        assert np.array_equal(got, want), f"drawing {i}: max diff {np.abs(got - want.astype(int)).max()}"
    # Normalisation: the same float32 bits as numpy's (x / 255 - mean) / std in float32.
    u8 = np.array([0, 1, 127, 128, 254, 255], np.uint8)
    want = (u8.astype(np.float32) / np.float32(255) - np.float32(0.1307)) / np.float32(0.3081)
    assert np.array_equal(np.asarray(result["normalised"], np.float32), want)
