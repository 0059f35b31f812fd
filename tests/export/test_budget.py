"""The int8 budget and sensitivity on a model of the user's own that takes raw pixels (a Rescaling layer first) and has
a separable convolution: a hand-set brightness classifier, no training, so every figure is known in advance."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgeport.cli import main

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

INT8 = "tflite_int8,onnx_static_int8"


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


def test_a_budget_too_fine_for_a_folders_own_val_split_says_to_add_images_there(brightness, tmp_path, capsys):
    """--val-size does not change an image folder's own val/: the error says where more images would go."""
    from PIL import Image

    brightness_model, brightness_images = brightness
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("val", 10), ("test", 10)):
        x, y = brightness_images(n, rng)
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = tmp_path / "data" / split / ("bright", "dark")[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    model = tmp_path / "model.keras"
    brightness_model().save(model)
    out = tmp_path / "run"
    assert main(["export", "--model", str(model), "--data", str(tmp_path / "data"), "--out", str(out), "--targets",
                 "tflite_int8", "--max-drop", "5"]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("edgeport: error:")]
    assert "the 10 images it is measured on (validation split)" in line
    assert f"about 120 images in {(tmp_path / 'data' / 'val').resolve()}/" in line and "--val-size" not in line
    assert not out.exists()


def test_a_file_with_layers_kept_in_float_is_mixed_in_the_report_as_on_its_own(raw_pixels, tmp_path):
    from edgeport.pipeline import file_precision

    recipe = tmp_path / "keep.toml"
    recipe.write_text('[[variant]]\nmethod = "float"\ntargets = ["tflite_int8", "onnx_static_int8"]\n'
                      'keep_float = ["sep_relu"]\n')
    run = tmp_path / "run"
    model, data = raw_pixels
    assert main(["export", "--model", str(model), "--data", str(data), "--out", str(run), "--recipe", str(recipe),
                 "--val-size", "200", "--calibration-size", "100", "--no-sensitivity"]) == 0
    assert main(["eval", str(run)]) == 0
    for row in json.loads((run / "report.json").read_text())["artifacts"]:
        assert row["precision"] == "mixed" == file_precision(run / row["path"], "int8"), row["name"]


def test_a_keep_float_layer_the_converter_folded_away_names_the_file_it_stopped(raw_pixels, tmp_path, capsys):
    """TFLite folds the Rescaling layer into the first conv, so it has no op to keep in float; ONNX keeps it."""
    recipe = tmp_path / "keep.toml"
    recipe.write_text('[[variant]]\nmethod = "float"\ntargets = ["tflite_int8", "onnx_static_int8"]\n'
                      'keep_float = ["scale"]\n')
    model, data = raw_pixels
    run = tmp_path / "run"
    assert main(["export", "--model", str(model), "--data", str(data), "--out", str(run), "--recipe", str(recipe),
                 "--val-size", "200", "--calibration-size", "100", "--no-sensitivity"]) == 1
    assert "edgeport: not exported: tflite_int8: keep_float: the TFLite graph has no op for layer(s) scale" in (
        capsys.readouterr().err)
    (failed,) = json.loads((run / "manifest.json").read_text())["failed"]
    assert failed["target"] == "tflite_int8" and failed["error"].startswith("tflite_int8: keep_float:")
