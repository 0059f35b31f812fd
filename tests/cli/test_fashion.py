"""Fashion-MNIST (Debian's dataset-fashion-mnist, IDX) with --labels: class names all the way to `predict`, and
files that say `resize` preprocessing, not MNIST's digit recipe."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgeport.cli import main

FASHION = Path("/usr/share/datasets/fashion-mnist")
LABELS = Path(__file__).resolve().parents[2] / "examples" / "fashion_mnist_labels.txt"

pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed "
                                                              "(apt-get install dataset-fashion-mnist; .ci/run does)")


def test_fashion_mnist_with_labels_predicts_class_names(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    from PIL import Image

    from edgeport.core.data import load_dataset
    from edgeport.runtime import load

    run = tmp_path / "fashion"
    assert main(["train", "--model", "tiny", "--epochs", "2", "--data", str(FASHION), "--labels", str(LABELS),
                 "--train-limit", "6000", "--val-size", "500", "--test-limit", "200", "--out", str(run)]) == 0
    assert main(["export", str(run), "--targets", "tflite_int8", "--calibration-size", "64"]) == 0
    names = LABELS.read_text().splitlines()
    model = load(run / "artifacts" / "tflite_int8.tflite")
    assert model.spec.labels == tuple(names) and model.spec.preprocessing == "resize"
    assert model.metadata["preprocessing"] == "resize"

    data = load_dataset(FASHION, val_size=0, test_limit=20)
    images = []
    for i, img in enumerate(data.test_images):
        images.append(tmp_path / f"{i}.png")
        Image.fromarray(img[..., 0]).save(images[-1])
    capsys.readouterr()
    assert main(["predict", str(run / "artifacts" / "tflite_int8.tflite"), *map(str, images), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    predicted = [p["label"] for p in out["predictions"]]
    assert set(predicted) <= set(names) and out["preprocess"] == "resize"
    right = np.mean([p == names[y] for p, y in zip(predicted, data.test_labels, strict=True)])
    assert right >= 0.5, f"only {right:.0%} of 20 Fashion-MNIST test images read right: {predicted}"
