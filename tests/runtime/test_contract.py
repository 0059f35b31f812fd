"""One contract, every backend: each exported file must behave the same through edgeport.runtime."""

import numpy as np
import pytest

from edgeport.core.errors import InputError
from edgeport.runtime import Model, load

BACKENDS = ["tflite_fp32", "tflite_int8", "onnx_fp32", "tflite_int8@tflm"]  # artifact[@runtime backend]


@pytest.fixture(params=BACKENDS)
def model(request, artifacts) -> Model:
    name, _, backend = request.param.partition("@")
    if backend == "tflm":
        pytest.importorskip("tflite_micro")
    return load(artifacts[name], backend=backend or None)


def test_predict_returns_probabilities(model, mnist_test):
    images, _ = mnist_test
    probs = model.predict(images[:40])
    assert probs.shape == (40, 10) and probs.dtype == np.float32
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, atol=0.02)


def test_accepts_every_documented_image_layout(model, mnist_test):
    images, _ = mnist_test
    x = images[:5]
    base = model.predict(x)
    for variant in (x[..., 0], x.astype(np.float32) / 255.0, (x[..., 0].astype(np.float64) / 255.0)):
        assert np.allclose(model.predict(variant), base, atol=1e-6)
    assert np.allclose(model.predict(x[0]), base[:1], atol=1e-6)  # a single (28, 28, 1) image
    assert np.allclose(model.predict(x[0, ..., 0]), base[:1], atol=1e-6)  # a single (28, 28) image


def test_batching_does_not_change_results(model, mnist_test):
    images, _ = mnist_test
    assert np.allclose(model.predict(images[:20], batch_size=7), model.predict(images[:20], batch_size=20), atol=1e-6)


def test_evaluate_reports_accuracy_and_confusion(model, mnist_test):
    images, labels = mnist_test
    ev = model.evaluate(images, labels, reference=model.predict(images))
    assert ev.confusion.shape == (10, 10) and ev.confusion.sum() == len(labels)
    assert ev.accuracy == pytest.approx(np.trace(ev.confusion) / len(labels))
    assert ev.accuracy > 0.5 and ev.agreement == 1.0 and ev.max_abs_diff == 0.0
    assert len(ev.per_class_accuracy) == 10


def test_benchmark_reports_ordered_percentiles(model):
    b = model.benchmark(runs=30, warmup=3)
    lat = b.latency_ms
    assert len(b.samples_ms) == 30 and 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
    assert b.load_ms > 0 and b.first_ms > 0


def test_describe_names_io(model):
    d = model.describe()
    assert d["inputs"][0]["shape"][1:] == [28, 28, 1] and d["outputs"][0]["shape"][-1] == 10


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 32, 32), np.uint8), "expected images of shape"),
    (np.zeros((2, 28, 28, 3), np.uint8), "expected images of shape"),
    (np.zeros((2, 784), np.uint8), "expected images of shape"),
    (np.zeros((2, 28, 28), np.int64), "expected uint8 or float images"),
    (np.full((2, 28, 28), 255.0, np.float32), "must be in \\[0, 1\\]"),
    (np.full((2, 28, 28), np.nan, np.float32), "must be in \\[0, 1\\]"),
])
def test_bad_images_are_one_line_errors(model, bad, message):
    with pytest.raises(InputError, match=message):
        model.predict(bad)


def test_int8_model_quantises_input_from_its_own_params(artifacts):
    m = load(artifacts["tflite_int8"])
    assert m.input.dtype == "int8" and m.input.quantized
    q = m.prepare(np.array([[[0, 255]]], dtype=np.uint8).repeat(28, 1).repeat(14, 2))
    assert q.dtype == np.int8 and q.min() == -128 and q.max() == 127
