"""The int8 budget and sensitivity on a model of the user's own that takes raw pixels (a Rescaling layer first) and has
a separable convolution: a hand-set brightness classifier, no training, so every figure is known in advance."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgeport.cli import main

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

INT8 = "tflite_int8,onnx_static_int8"


def _brightness_model():
    """Rescaling(1/255) -> SeparableConv2D(3, 1) -> BN -> ReLU -> GAP -> Dense(2): class 0 for bright images, 1 for
    dark. The separable conv's outputs are the mean pixel m, 1 - m and red / 3 (the depthwise step alone is the
    image itself, a different tensor of the same shape); batch norm is the identity."""
    from keras import layers as L

    inp = keras.Input((8, 8, 3))
    x = L.Rescaling(1 / 255.0, name="scale")(inp)
    x = L.SeparableConv2D(3, 1, name="sep")(x)
    x = L.BatchNormalization(name="sep_bn")(x)
    x = L.ReLU(name="sep_relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(2, activation="softmax", name="classifier")(x)
    model = keras.Model(inp, out)
    pointwise = np.array([[1, -1, 1], [1, -1, 0], [1, -1, 0]], np.float32).reshape(1, 1, 3, 3) / 3
    model.get_layer("sep").set_weights([np.ones((1, 1, 3, 1), np.float32), pointwise,
                                        np.array([0, 1, 0], np.float32)])
    bn = model.get_layer("sep_bn")
    bn.set_weights([np.ones(3), np.zeros(3), np.zeros(3), np.full(3, 1 - bn.epsilon)])
    model.get_layer("classifier").set_weights([np.array([[10, -10], [-10, 10], [0, 0]], np.float32), np.zeros(2)])
    return model


def _images(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % 2
    low = np.where(labels == 0, 150, 0)[:, None, None, None]
    return (low + rng.integers(0, 100, (n, 8, 8, 3))).astype(np.uint8), labels


@pytest.fixture(scope="module")
def raw_pixels(tmp_path_factory) -> tuple[Path, Path]:
    """(model.keras, data.npz): the classifier scores 100% on its data in float."""
    root = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = _images(600, rng), _images(200, rng)
    np.savez(root / "data.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    model = _brightness_model()
    assert (model.predict(x_test.astype(np.float32), verbose=0).argmax(1) == y_test).all()
    model.save(root / "model.keras")
    return root / "model.keras", root / "data.npz"


def _export(model: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["export", "--model", str(model), "--data", str(data), "--out", str(out), "--targets", INT8,
                 "--val-size", "200", "--calibration-size", "100", *extra])


def test_budget_measures_files_with_the_models_own_input_scaling(raw_pixels, tmp_path):
    """The model takes raw pixels (--input-scale 1): measured as 1/255 images, every file would call all of them
    dark (50%) and no set of float layers would meet the budget."""
    assert _export(*raw_pixels, tmp_path / "run", "--max-drop", "5", "--no-sensitivity") == 0
    arts = json.loads((tmp_path / "run" / "manifest.json").read_text())["artifacts"]
    assert len(arts) == 2
    for art in arts:
        budget = art["lineage"]["conversion"]["budget"]
        assert budget["validation_drop"] <= 5 and budget["float_accuracy"] == 1.0


def test_a_separable_conv_is_compared_at_its_output_not_its_depthwise_step(raw_pixels, tmp_path):
    """TFLite writes a separable conv as a depthwise op (named by the layer) and a pointwise conv fused with batch
    norm and ReLU: the depthwise output is a step inside the layer, not the layer's output (about 0 dB against it)."""
    assert _export(*raw_pixels, tmp_path / "run") == 0
    arts = json.loads((tmp_path / "run" / "manifest.json").read_text())["artifacts"]
    for art in arts:
        rows = art["sensitivity"]
        assert rows and all(r["sqnr_db"] > 20 for r in rows), (art["name"], rows)
        assert not any(r["tensor"].endswith(("depthwise", "depthwise1", "depthwise:0")) for r in rows)


def test_a_budget_too_fine_for_a_folders_own_val_split_says_to_add_images_there(tmp_path, capsys):
    """--val-size does not change an image folder's own val/: the error says where more images would go."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("val", 10), ("test", 10)):
        x, y = _images(n, rng)
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = tmp_path / "data" / split / ("bright", "dark")[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    model = tmp_path / "model.keras"
    _brightness_model().save(model)
    out = tmp_path / "run"
    assert main(["export", "--model", str(model), "--data", str(tmp_path / "data"), "--out", str(out), "--targets",
                 "tflite_int8", "--max-drop", "5"]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("edgeport: error:")]
    assert "the 10 images it is measured on (validation split)" in line
    assert f"about 120 images in {(tmp_path / 'data' / 'val').resolve()}/" in line and "--val-size" not in line
    assert not out.exists()
