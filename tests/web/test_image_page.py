"""The page for a model that is not a digit model (an RGB run with named classes), in headless chromium: image
files decoded by the browser and preprocessed by the page give Python's pixels exactly; a chosen or dropped
image is classified by name as the Python runtime classifies it; the camera snapshot works, and a refused or
missing camera is said; the parity run on RGB test images agrees with the Python runtime."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

PARITY_N = 100
RGB_LABELS = ("red", "green", "blue")  # the RGB run's classes (conftest.rgb_run)


def open_page(page, url: str, query: str = "") -> None:
    page.goto(f"{url}/{query}")
    page.wait_for_function("document.body.dataset.ready !== undefined", timeout=30_000)
    assert page.evaluate("document.body.dataset.ready") == "true", page.errors


def page_preprocess(page, data: bytes, mime: str, spec) -> dict:
    """The page's own path for a dropped file (browser decoding + preprocess.js) under `spec`."""
    return page.evaluate("([b64, type, spec]) => window.edgeport.preprocessBytes(b64, type, spec)",
                         [base64.b64encode(data).decode(), mime, spec.to_dict()])


def sample_files(tmp_path: Path) -> dict[str, Path]:
    """PNG files of every kind Pillow and browsers decode alike: grey, RGB, semi-transparent RGBA, grey + alpha,
    a palette with a transparent entry; odd sizes, from 5x9 to 301x199."""
    from PIL import Image

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:199, 0:301]
    smooth = np.stack([(yy + xx) % 256, (2 * yy) % 256, (255 - xx) % 256], -1).astype(np.uint8)
    images = {
        "grey-37x23.png": Image.fromarray(rng.integers(0, 256, (23, 37), dtype=np.uint8), "L"),
        "rgb-5x9.png": Image.fromarray(rng.integers(0, 256, (9, 5, 3), dtype=np.uint8), "RGB"),
        "rgb-301x199.png": Image.fromarray(smooth, "RGB"),
        "rgba-40x30.png": Image.fromarray(rng.integers(0, 256, (30, 40, 4), dtype=np.uint8), "RGBA"),
        "la-17x64.png": Image.fromarray(rng.integers(0, 256, (64, 17, 2), dtype=np.uint8), "LA"),
    }
    palette = Image.fromarray(rng.integers(0, 16, (33, 47), dtype=np.uint8), "P")
    palette.putpalette(rng.integers(0, 256, 48).tolist())
    palette.info["transparency"] = 3
    images["palette-47x33.png"] = palette
    paths = {}
    for name, im in images.items():
        paths[name] = tmp_path / name
        im.save(paths[name])
    return paths


def test_page_pixels_equal_python_on_png_files(page, rgb_server_url, tmp_path):
    """Browser decoding + preprocess.js == edgeport.core.images.preprocess_file, for grey and RGB model inputs,
    pad / crop / stretch, shrinking and enlarging, square and not, and `none` on a file already the right size."""
    from edgeport.core.images import preprocess_file
    from edgeport.core.spec import InputSpec

    open_page(page, rgb_server_url)
    checked = 0
    for name, path in sample_files(tmp_path).items():
        for channels in (1, 3):
            for mode in ("pad", "crop", "stretch"):
                for h, w in ((32, 32), (24, 57)):
                    spec = InputSpec(h, w, channels, preprocessing="resize", resize=mode)
                    got = page_preprocess(page, path.read_bytes(), "image/png", spec)
                    want = preprocess_file(path, spec)
                    got = np.asarray(got["image"], np.int64).reshape(want.shape)
                    assert np.array_equal(got, want), (name, spec, np.abs(got - want).max())
                    checked += 1
        from PIL import Image

        with Image.open(path) as im:
            size = im.size
        spec = InputSpec(size[1], size[0], 3, preprocessing="none")
        got = page_preprocess(page, path.read_bytes(), "image/png", spec)
        assert np.array_equal(np.asarray(got["image"]).reshape(size[1], size[0], 3), preprocess_file(path, spec))
    assert checked == 72 and not page.errors, page.errors


def test_jpeg_decoding_difference_is_measured(page, rgb_server_url, tmp_path):
    """JPEG is decoded by the browser, not Pillow: measure how far its pixels are from Pillow's on a smooth
    photo-like image (quality 90, 4:2:0 chroma), and that the EXIF orientation is applied as Pillow applies it."""
    from PIL import Image

    from edgeport.core.images import load_image
    from edgeport.core.spec import InputSpec

    open_page(page, rgb_server_url)
    yy, xx = np.mgrid[0:120, 0:160]
    photo = np.stack([128 + 100 * np.sin(xx / 13), 128 + 90 * np.cos(yy / 9), (xx + yy) % 256], -1)
    im = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    path = tmp_path / "photo.jpg"
    path.write_bytes(buf.getvalue())
    got = page_preprocess(page, buf.getvalue(), "image/jpeg", InputSpec(120, 160, 3, preprocessing="none"))
    diff = np.abs(np.asarray(got["image"]).reshape(120, 160, 3) - load_image(path, channels=3).astype(int))
    print("jpeg", json.dumps({"max_abs": int(diff.max()), "mean_abs": float(diff.mean()),
                              "share_differing": float((diff > 0).mean())}))
    assert diff.mean() < 2 and diff.max() <= 32, (diff.mean(), diff.max())  # the same picture, decoder rounding apart

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rotated = tmp_path / "rotated.jpg"
    im.save(rotated, "JPEG", quality=90, exif=exif.tobytes())
    got = page_preprocess(page, rotated.read_bytes(), "image/jpeg", InputSpec(160, 120, 3, preprocessing="none"))
    assert (got["height"], got["width"]) == load_image(rotated, channels=3).shape[:2] == (160, 120)


@pytest.mark.parametrize("artifact", ["onnx_fp32", "web_tflite_int8"])
def test_chosen_image_is_classified_by_name_as_python_does(page, rgb_server_url, rgb_run, colour_files, tmp_path,
                                                          artifact):
    from edgeport.core.images import preprocess_file
    from edgeport.runtime import load

    open_page(page, rgb_server_url, f"?artifact={artifact}")
    assert page.locator("#image-ui").is_visible() and page.locator("#pad").is_hidden()  # not a digit model
    model = load(next((rgb_run / "artifacts").glob(f"{artifact}.*")))
    assert model.spec.labels == RGB_LABELS
    for path in colour_files:
        page.evaluate("window.lastPrediction = null")
        page.set_input_files("#file", str(path))
        page.wait_for_function("window.lastPrediction", timeout=30_000)
        pred = page.evaluate("window.lastPrediction")
        want = preprocess_file(path, model.spec)
        assert pred["shape"] == [32, 32, 3] and pred["source"] == "file" and pred["name"] == path.name
        assert np.array_equal(np.asarray(pred["input"]).reshape(want.shape), want), path
        probs = model.predict(want[None])[0]
        assert [t["label"] for t in pred["top"]] == [RGB_LABELS[i] for i in np.argsort(-probs, kind="stable")]
        if artifact == "onnx_fp32":
            assert all(abs(t["probability"] - probs[t["index"]]) <= 1e-4 for t in pred["top"]), (pred["top"], probs)
        assert pred["latency_ms"] > 0
    assert page.evaluate("[document.getElementById('preview').width, document.getElementById('preview').height]") \
        == [32, 32]
    if artifact == "onnx_fp32":
        shot = Path(os.environ.get("EDGEPORT_SCREENSHOT_DIR", tmp_path)) / "serve-page-image.png"
        page.screenshot(path=str(shot), full_page=True)
    assert not page.errors, page.errors


def test_dropped_file_is_classified(page, rgb_server_url, colour_files):
    path = colour_files[0]
    open_page(page, rgb_server_url)
    page.evaluate("""async (b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true,
                                                                             cancelable: true }));
    }""", base64.b64encode(path.read_bytes()).decode())
    page.wait_for_function("window.lastPrediction", timeout=30_000)
    pred = page.evaluate("window.lastPrediction")
    assert pred["name"] == "dropped.png" and pred["top"][0]["label"] in RGB_LABELS


def test_a_file_that_is_not_an_image_is_said(page, rgb_server_url, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image")
    open_page(page, rgb_server_url)
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#bars .error", timeout=30_000)
    assert "cannot decode" in page.text_content("#bars .error") and not page.errors


def test_camera_snapshot_is_classified(page, rgb_server_url):
    """Chromium's fake camera (a generated test picture) through the snapshot button."""
    open_page(page, rgb_server_url)
    page.click("#camera")
    page.wait_for_selector("#snapshot:not([hidden])", timeout=30_000)
    page.wait_for_function("document.getElementById('video').videoWidth > 0", timeout=30_000)
    page.click("#snapshot")
    page.wait_for_function("window.lastPrediction && window.lastPrediction.source === 'camera'", timeout=30_000)
    pred = page.evaluate("window.lastPrediction")
    assert pred["shape"] == [32, 32, 3] and pred["top"][0]["label"] in RGB_LABELS
    page.click("#camera-stop")
    assert page.locator("#video").is_hidden() and page.locator("#camera").is_visible()
    assert not page.errors, page.errors


REFUSE = ("navigator.mediaDevices.getUserMedia = () => "
          "Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));")
NO_CAMERA = "navigator.mediaDevices.enumerateDevices = async () => [];"
NO_API = "Object.defineProperty(navigator, 'mediaDevices', { value: undefined });"


@pytest.mark.parametrize(("script", "said", "disabled"), [
    (REFUSE, "permission was refused", False),
    (NO_CAMERA, "No camera found", True),
    (NO_API, "no camera access", True),
])
def test_camera_refused_or_absent_is_said(page_factory, rgb_server_url, script, said, disabled):
    page = page_factory(init_script=script)
    open_page(page, rgb_server_url)
    page.wait_for_function(f"document.getElementById('camera').disabled === {json.dumps(disabled)}", timeout=10_000)
    if not disabled:
        page.click("#camera")
    page.wait_for_function(f"document.getElementById('camera-message').textContent.includes({json.dumps(said)})",
                           timeout=10_000)
    assert page.locator("#snapshot").is_hidden() and not page.errors, page.errors


def test_rgb_parity_with_the_python_runtime(page, rgb_server_url, rgb_run):
    from edgeport.core.manifest import read_manifest
    from edgeport.core.run import RunFolder
    from edgeport.runtime import load

    open_page(page, rgb_server_url, f"?parity={PARITY_N}")
    page.wait_for_function("window.parityResults !== undefined", timeout=180_000)
    res = page.evaluate("window.parityResults")
    assert not res.get("error") and not res["errors"], res.get("error") or res["errors"]
    assert res["shape"] == [PARITY_N, 32, 32, 3]
    images = RunFolder(rgb_run).dataset(test_limit=PARITY_N).test_images
    arts = {a["name"]: a for a in read_manifest(rgb_run)["artifacts"]}
    assert set(res["results"]) == set(arts)
    summary = {}
    for name, r in res["results"].items():
        python = load(rgb_run / arts[name]["path"]).predict(images)
        browser = np.asarray(r["probs"], dtype=np.float32)
        assert browser.shape == python.shape == (PARITY_N, 3)
        agreement = float((browser.argmax(1) == python.argmax(1)).mean())
        max_diff = float(np.abs(browser - python).max())
        summary[name] = {"agreement": agreement, "max_abs_diff": max_diff, "accuracy": r["accuracy"],
                         "browser_median_ms": r["median_ms"]}
        if arts[name]["precision"] == "float32":
            assert agreement == 1.0 and max_diff <= 1e-4, (name, agreement, max_diff)
        else:
            assert agreement >= 0.98, (name, agreement)
    print("rgb parity", json.dumps(summary))
