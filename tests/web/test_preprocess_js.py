"""edgeport/web/preprocess.js (run with node) gives the same pixels and model input as edgeport/core/images.py
and InputSpec.normalise: MNIST drawings of many sizes and polarities; grey, RGB and semi-transparent images
resized by pad, crop and stretch, up and down, to odd sizes; every pixel value normalised under several specs.
No browser needed, only node. (tests/web/test_image_page.py checks the same through the page's own decoding.)"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import numpy as np
import pytest

from edgeport.serve import PAGE_DIR

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node not found (it comes with npm: apt-get install nodejs npm)")

SCRIPT = """
import { mnistPreprocess, preprocessImage, toModelInput } from %s;
import fs from 'fs';
const { drawings, images, normalise } = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const rgba = (b64) => new Uint8Array(Buffer.from(b64, 'base64'));
const out = {
  drawings: drawings.map(({ w, h, rgba: b }) => Array.from(mnistPreprocess(rgba(b), w, h).image)),
  images: images.map(({ w, h, rgba: b, spec }) => Array.from(preprocessImage(rgba(b), w, h, spec))),
  normalise: normalise.map(({ pixels, spec }) => Array.from(toModelInput(Uint8Array.from(pixels), spec))),
};
console.log(JSON.stringify(out));
"""


def run_node(tmp_path, cases: dict) -> dict:
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = tmp_path / "run.mjs"
    script.write_text(SCRIPT % json.dumps((PAGE_DIR / "preprocess.js").as_uri()))
    done = subprocess.run([NODE, str(script), str(tmp_path / "cases.json")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


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


def photos(n: int = 90):
    """Random images of odd sizes (1 px to 160 px a side): grey, RGB, and RGBA with every alpha, noisy or smooth."""
    from PIL import Image

    rng = np.random.default_rng(11)
    for i in range(n):
        h, w = int(rng.integers(1, 160)), int(rng.integers(1, 160))
        mode = ("L", "RGB", "RGBA")[i % 3]
        channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
        if i % 2:
            x = rng.integers(0, 256, (h, w, channels))
        else:  # smooth gradients: where rounding differences would show as a shifted level
            yy, xx = np.mgrid[0:h, 0:w]
            x = np.stack([(yy * 255 // max(h - 1, 1) + c * 40 + xx * 3) % 256 for c in range(channels)], axis=-1)
        x = x.astype(np.uint8)
        yield Image.fromarray(x[..., 0] if mode == "L" else x, mode)


def test_mnist_preprocessing_matches_python(tmp_path):
    from edgeport.core.images import load_image, mnist_preprocess

    cases, expected = [], []
    for i, im in enumerate(drawings()):
        path = tmp_path / f"d{i}.png"
        im.save(path)
        cases.append({"w": im.width, "h": im.height, "rgba": base64.b64encode(im.tobytes()).decode()})
        expected.append(mnist_preprocess(load_image(path)))
    result = run_node(tmp_path, {"drawings": cases, "images": [], "normalise": []})
    for i, (got, want) in enumerate(zip(result["drawings"], expected, strict=True)):
        got = np.asarray(got).reshape(28, 28)
        assert np.array_equal(got, want), f"drawing {i}: max diff {np.abs(got - want.astype(int)).max()}"


def test_resize_preprocessing_matches_python(tmp_path):
    """Every image through a spec of its own: 1 or 3 channels, pad / crop / stretch, a target size from 1 px to
    64 px (so both upscaling and downscaling, square and not), against preprocess_file on the same PNG file."""
    from edgeport.core.images import preprocess_file
    from edgeport.core.spec import InputSpec

    rng = np.random.default_rng(3)
    cases, expected = [], []
    for i, im in enumerate(photos()):
        path = tmp_path / f"p{i}.png"
        im.save(path)
        spec = InputSpec(int(rng.integers(1, 65)), int(rng.integers(1, 65)), channels=(1, 3)[i % 2],
                         preprocessing="resize", resize=("pad", "crop", "stretch")[i % 3 if i % 7 else (i + 1) % 3])
        rgba = im.convert("RGBA")  # what the browser's decoder hands the page: straight RGBA
        cases.append({"w": im.width, "h": im.height, "rgba": base64.b64encode(rgba.tobytes()).decode(),
                      "spec": spec.to_dict()})
        expected.append(preprocess_file(path, spec))
    result = run_node(tmp_path, {"drawings": [], "images": cases, "normalise": []})
    for i, (got, want, case) in enumerate(zip(result["images"], expected, cases, strict=True)):
        got = np.asarray(got, np.int64)
        assert got.size == want.size, (i, case["spec"], got.size, want.shape)
        got = got.reshape(want.shape)
        assert np.array_equal(got, want), (f"image {i} {case['w']}x{case['h']} -> {case['spec']}: max diff "
                                           f"{np.abs(got - want).max()}")


@pytest.mark.parametrize("spec", [
    dict(channels=1),  # scale 1/255: divided by 255
    dict(channels=1, mean=(0.1307,), std=(0.3081,)),  # MNIST's statistics
    dict(channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),  # ImageNet's, per channel
    dict(channels=3, scale=1 / 127.5, mean=(1.0,), std=(1.0,)),  # [-1, 1] (MobileNet style)
    dict(channels=3, scale=1.0, layout="NCHW"),  # raw pixels, channels first
    dict(channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4), layout="NCHW"),
])
def test_normalisation_has_the_same_float32_bits(tmp_path, spec):
    """Every pixel value 0..255 in every channel: the page's model input is InputSpec.normalise's, bit for bit."""
    from edgeport.core.spec import InputSpec

    s = InputSpec(16, 16, **spec)
    pixels = np.stack([np.roll(np.arange(256, dtype=np.uint8), 37 * c) for c in range(s.channels)], -1)
    pixels = pixels.reshape(16, 16, s.channels)
    result = run_node(tmp_path, {"drawings": [], "images": [],
                                 "normalise": [{"pixels": pixels.reshape(-1).tolist(), "spec": s.to_dict()}]})
    got = np.asarray(result["normalise"][0], np.float32)
    want = s.normalise(pixels[None])[0]
    assert np.array_equal(got, want.reshape(-1)), np.abs(got - want.reshape(-1)).max()
