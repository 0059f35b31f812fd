"""`edgeport serve` without a browser: what the page is told, the upload limits, path traversal, loopback."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from edgeport.core.errors import ConfigError  # noqa: E402
from edgeport.serve import ServeConfig, create_app, is_loopback  # noqa: E402


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height and whose pixel data is 8 bytes of garbage: only its header
    can be read; decoding it would fail."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"garbage!") + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def client(web_app):
    with TestClient(web_app) as c:
        yield c


@pytest.fixture(scope="module")
def small_limits(web_run):
    """The same run served with tiny limits, so the limit tests need no big payloads."""
    with TestClient(create_app(web_run, ServeConfig(max_upload_bytes=20_000, max_pixels=100 * 100))) as c:
        yield c


def test_web_exports_are_batch1_float_io(web_run):
    from edgeport.core.manifest import read_manifest

    arts = {a["name"]: a for a in read_manifest(web_run)["artifacts"]}
    for name in ("web_tflite_fp32", "web_tflite_int8"):
        (inp,), (out,) = arts[name]["inputs"], arts[name]["outputs"]
        assert inp["shape"] == [1, 28, 28, 1] and inp["dtype"] == "float32", inp
        assert out["dtype"] == "float32", out
    assert arts["web_tflite_int8"]["bytes"] < arts["web_tflite_fp32"]["bytes"] / 2  # the inside is int8
    assert arts["web_tflite_int8"]["validation"]["agreement"] >= 0.95


def test_float_io_int8_outputs_are_read_as_probabilities(web_run, mnist_test):
    """The int8-inside file's dequantised softmax sums to 1 only within 1/256 steps; the runtime must not
    take it for logits and softmax it again (that flattens every row to ~0.23 / 0.085)."""
    from edgeport.runtime import load

    images, labels = mnist_test
    probs = load(web_run / "artifacts" / "web_tflite_int8.tflite").predict(images[:100])
    assert np.median(probs.max(axis=1)) > 0.9
    assert (probs.argmax(1) == labels[:100]).mean() > 0.9


def test_artifacts_say_what_the_browser_can_run_and_why_not(client):
    body = client.get("/api/artifacts").json()
    arts = {a["name"]: a for a in body["artifacts"]}
    assert arts["onnx_fp32"]["runnable"] and arts["onnx_fp32"]["runtime"] == "onnxruntime-web"
    assert arts["web_tflite_fp32"]["runnable"] and arts["web_tflite_int8"]["runtime"] == "litert.js"
    # The default int8 file has a dynamic batch and int8 I/O, both of which LiteRT.js refuses.
    assert not arts["tflite_int8"]["runnable"]
    assert "dynamic" in arts["tflite_int8"]["reason"] and "int8" in arts["tflite_int8"]["reason"]
    assert body["runtimes"]["onnxruntime-web"] and body["runtimes"]["@litertjs/core"]
    spec = arts["onnx_fp32"]["input_spec"]
    assert spec["labels"] == [str(i) for i in range(10)] and spec["preprocessing"] == "mnist"
    assert (spec["height"], spec["width"], spec["channels"]) == (28, 28, 1)


def test_missing_node_modules_makes_everything_unavailable_with_the_reason(web_run, tmp_path):
    with TestClient(create_app(web_run, ServeConfig(vendor_dir=tmp_path / "node_modules"))) as c:
        arts = c.get("/api/artifacts").json()["artifacts"]
        assert c.get("/").status_code == 200  # the page itself still loads and shows the reasons
    assert arts and all(not a["runnable"] and "npm ci" in a["reason"] for a in arts)


def test_page_runtimes_and_artifact_files_are_served(client, web_run):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "importmap" in page.text
    assert page.headers["cross-origin-opener-policy"] == "same-origin"
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    wasm = client.get("/vendor/ort/ort-wasm-simd-threaded.wasm")
    assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
    assert client.get("/vendor/litert/dist/index.js").status_code == 200
    assert client.get("/vendor/litert-utils/index.js").status_code == 200
    onnx = client.get("/artifacts/onnx_fp32")
    assert onnx.content == (web_run / "artifacts" / "onnx_fp32.onnx").read_bytes()


@pytest.mark.parametrize("path", [
    "/static/../pyproject.toml",
    "/static/%2e%2e/%2e%2e/pyproject.toml",
    "/static/..%2f..%2fpyproject.toml",
    "/vendor/ort/../package.json",
    "/vendor/ort/%2e%2e/package.json",
    "/vendor/litert/package.json",  # inside the folder, but not a .js/.mjs/.wasm runtime file
    "/vendor/ort/ort.min.js.map",
    "/vendor/ort/ort.all.min.mjs",  # a real runtime file, but not one the page loads (vendor.json)
    "/vendor/nope/index.js",
    "/static/vendor.json",
    "/static/index.html",
    "/artifacts/..%2fmanifest.json",
    "/artifacts/nope",
    "/etc/passwd",
])
def test_paths_outside_what_is_served_get_404(client, path):
    assert client.get(path).status_code == 404, path


def test_testset_hands_out_uint8_images_and_labels(client):
    import base64

    from edgeport.core.data import load_dataset

    body = client.get("/api/testset", params={"n": 5, "offset": 3}).json()
    images = np.frombuffer(base64.b64decode(body["images_b64"]), np.uint8).reshape(body["shape"])
    data = load_dataset(test_limit=8, train_limit=10, val_size=1)
    assert (images == data.test_images[3:8]).all() and body["labels"] == data.test_labels[3:8].tolist()
    assert client.get("/api/testset", params={"n": 0}).status_code == 422
    assert client.get("/api/testset", params={"n": 10, "offset": 999_995}).status_code == 422


def test_predict_reads_mnist_digits(client, web_run):
    from edgeport.core.data import load_dataset

    data = load_dataset(test_limit=3, train_limit=10, val_size=1)
    for image, label in zip(data.test_images, data.test_labels, strict=True):
        r = client.post("/api/predict", params={"artifact": "tflite_int8", "k": 3}, content=png(image),
                        headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["top"]) == 3 and body["top"][0]["label"] == str(label), body
        assert body["top"][0]["probability"] > 0.5, body
        assert body["top"][0]["probability"] >= body["top"][1]["probability"]


def test_predict_bad_input(client, small_limits):
    hdr = {"Content-Type": "image/png"}
    r = client.post("/api/predict", content=b"not an image at all", headers=hdr)
    assert r.status_code == 415 and "not an image" in r.json()["detail"]
    r = client.post("/api/predict", content=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert client.post("/api/predict", content=b"", headers=hdr).status_code == 400
    blank = client.post("/api/predict", content=png(np.full((50, 50), 255, np.uint8)), headers=hdr)
    assert blank.status_code == 400 and "no ink" in blank.json()["detail"]
    r = client.post("/api/predict", params={"artifact": "nope"}, content=png(np.zeros((28, 28), np.uint8)),
                    headers=hdr)
    assert r.status_code == 404
    r = client.post("/api/predict", params={"preprocess": "false"}, content=png(np.zeros((40, 40), np.uint8)),
                    headers=hdr)
    assert r.status_code == 400 and "28x28" in r.json()["detail"]


def test_upload_limits_answer_413_before_decoding(small_limits):
    hdr = {"Content-Type": "image/png"}
    # Over the byte limit, by the declared length and by counting a body sent without one (chunked).
    assert small_limits.post("/api/predict", content=b"\0" * 20_001, headers=hdr).status_code == 413
    chunks = (b"\0" * 8192 for _ in range(4))
    assert small_limits.post("/api/predict", content=chunks, headers=hdr).status_code == 413
    # Over the pixel limit: a PNG whose header claims 1000 x 1000 pixels and holds garbage. Decoding it fails
    # (415 when it is within the limit); 413 shows the server refused it from the header alone.
    assert small_limits.post("/api/predict", content=png_header_only(50, 50), headers=hdr).status_code == 415
    r = small_limits.post("/api/predict", content=png_header_only(1000, 1000), headers=hdr)
    assert r.status_code == 413 and "pixels" in r.json()["detail"]
    r = small_limits.post("/api/predict", content=png_header_only(100_000, 100_000), headers=hdr)
    assert r.status_code == 413  # past Pillow's own decompression-bomb limit too
    r = small_limits.post("/api/predict", content=png(np.zeros((101, 100), np.uint8)), headers=hdr)
    assert r.status_code == 413


def test_openapi_describes_predict(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/api/predict"]["post"]
    assert "image/png" in post["requestBody"]["content"]
    assert {"413", "415"} <= set(post["responses"])
    assert client.get("/docs").status_code == 200


def test_loopback_by_default_and_host_checked(tmp_path):
    from edgeport.cli import build_parser

    assert ServeConfig().host == "127.0.0.1" and is_loopback(ServeConfig().host)
    args = build_parser().parse_args(["serve", str(tmp_path)])
    assert args.host == "127.0.0.1"
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    with pytest.raises(ConfigError, match="--host"):
        ServeConfig(host="example.com").validate()
    with pytest.raises(ConfigError, match="--port"):
        ServeConfig(port=70000).validate()


def test_serve_refuses_a_busy_port_with_one_line(web_run):
    import socket

    from edgeport.serve import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
            serve(web_run, ServeConfig(port=s.getsockname()[1]))


def test_serve_cli_errors_are_one_line(tmp_path, capsys):
    from edgeport.cli import main

    assert main(["serve", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0], err


def test_an_rgb_run_is_described_served_and_predicted_by_its_spec(rgb_run):
    """A non-digit run: the page learns its whole input spec, the test set comes as (N, H, W, C), and
    /api/predict resizes an RGB photo of any size and answers with class names."""
    import base64

    from edgeport.core.run import RunFolder

    with TestClient(create_app(rgb_run)) as c:
        arts = c.get("/api/artifacts").json()["artifacts"]
        assert arts and all(a["runnable"] for a in arts)
        for a in arts:
            spec = a["input_spec"]
            assert (spec["height"], spec["width"], spec["channels"], spec["layout"]) == (32, 32, 3, "NHWC")
            assert spec["labels"] == ["red", "green", "blue"] and spec["preprocessing"] == "resize"
            assert spec["resize"] == "crop" and "norm_mean" not in a
        body = c.get("/api/testset", params={"n": 7, "offset": 2}).json()
        assert body["shape"] == [7, 32, 32, 3]
        images = np.frombuffer(base64.b64decode(body["images_b64"]), np.uint8).reshape(body["shape"])
        data = RunFolder(rgb_run).dataset(test_limit=9)
        assert (images == data.test_images[2:9]).all() and body["labels"] == data.test_labels[2:9].tolist()
        red = np.random.default_rng(0).integers(0, 90, (45, 61, 3))
        red[..., 0] += 150
        r = c.post("/api/predict", params={"artifact": "onnx_fp32", "k": 3}, content=png(red.astype(np.uint8)),
                   headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        assert [t["label"] for t in r.json()["top"]][0] == "red" and r.json()["preprocess"] == "resize"
