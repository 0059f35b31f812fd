"""Calibration choices: --calibration-method for onnx_static_int8, the lineage TFLite files get, and
--calibration-curve (accuracy on the validation split vs calibration images) in the run folder and the report."""

import json
import shutil

import pytest

from edgeport.cli import main
from edgeport.export.calibration_curve import CURVE_SIZES, curve_sizes

pytest.importorskip("tensorflow")


def _copy(tiny_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "train.json", "reference.npz"):
        shutil.copy(tiny_run / name, run / name)
    return run


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeport: error:"), err
    return err[0]


def test_curve_sizes_are_capped_at_the_split():
    assert curve_sizes(5000) == list(CURVE_SIZES)
    assert curve_sizes(1000) == list(CURVE_SIZES)
    assert curve_sizes(300) == [10, 50, 100, 300]
    assert curve_sizes(7) == [7]


def test_unknown_method_is_one_line_and_exit_2(tiny_run, tmp_path, capsys):
    run = _copy(tiny_run, tmp_path)
    assert main(["export", str(run), "--targets", "onnx_static_int8", "--calibration-method", "kl"]) == 2
    assert "unknown calibration method 'kl'; expected one of: minmax, percentile, entropy" in _one_line_error(capsys)
    assert sorted(p.name for p in run.iterdir()) == ["model.keras", "reference.npz", "train.json"]


def test_curve_without_a_calibrated_target_is_refused_before_any_work(tiny_run, tmp_path, capsys):
    run = _copy(tiny_run, tmp_path)
    assert main(["export", str(run), "--targets", "tflite_fp32,onnx_fp32", "--calibration-curve"]) == 2
    err = _one_line_error(capsys)
    assert "--calibration-curve needs a calibrated int8 target" in err and "onnx_static_int8" in err
    assert sorted(p.name for p in run.iterdir()) == ["model.keras", "reference.npz", "train.json"]
    out = tmp_path / "new"  # `run`: before anything is trained
    assert main(["run", "--quick", "--targets", "onnx_fp32", "--calibration-curve", "--out", str(out)]) == 2
    assert "--calibration-curve needs" in _one_line_error(capsys) and not out.exists()


def test_method_and_curve_reach_the_lineage_and_the_report(tiny_run, tmp_path, capsys):
    from edgeport.pipeline import evaluate_run
    from edgeport.runtime.report import to_markdown
    from edgeport.runtime.report_html import to_html

    run = _copy(tiny_run, tmp_path)
    assert main(["export", str(run), "--targets", "onnx_static_int8", "--calibration-method", "percentile",
                 "--calibration-size", "64", "--calibration-curve"]) == 0
    assert "calibration curve onnx_static_int8: 1000 images" in capsys.readouterr().err  # progress on stderr
    art = json.loads((run / "manifest.json").read_text())["artifacts"][0]
    assert art["lineage"]["conversion"]["calibrator"]["method"] == "Percentile"
    assert art["lineage"]["conversion"]["calibration"]["method"] == "percentile"

    curve = json.loads((run / "calibration_curve.json").read_text())
    assert curve["split"] == "val" and curve["method"] == "percentile" and curve["targets"] == ["onnx_static_int8"]
    assert curve["sizes"] == list(CURVE_SIZES)  # the tiny run's 2000 training images hold every size
    assert [p["size"] for p in curve["points"]] == list(CURVE_SIZES)
    assert all(0.3 < p["accuracy"] <= 1 for p in curve["points"])  # a trained model: well above chance (10%)
    assert curve["images"] == 500 and 0.3 < curve["reference_accuracy"] <= 1

    report = evaluate_run(run, None)
    assert report["calibration_curve"] == curve
    md = to_markdown(report)
    assert "## Calibration size" in md and "| onnx_static_int8 |" in md.split("## Calibration size")[1]
    assert "alt='accuracy vs calibration images'" in to_html(report, run)

    assert main(["export", str(run), "--targets", "onnx_static_int8", "--calibration-size", "16"]) == 0
    assert not (run / "calibration_curve.json").exists()  # a new export's files are not the curve's


def test_each_method_gives_its_own_ranges(tiny_run, tmp_path):
    """onnxruntime's entropy default (128 bins, 128 quantised bins) gave exactly minmax's ranges; with a 2048-bin
    histogram the KL search clips, so some activation ranges are much smaller."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edgeport.core.run import RunFolder
    from edgeport.export.export import ExportConfig, ExportContext
    from edgeport.export.onnx_export import export_onnx_static_int8
    from edgeport.train.compress import load_model
    from edgeport.train.tf import import_tf

    tf, _ = import_tf()
    run, model = RunFolder(tiny_run), load_model(tiny_run / "model.keras")
    scales = {}
    for method in ("minmax", "percentile", "entropy"):
        path = tmp_path / f"{method}.onnx"
        ctx = ExportContext(tf=tf, cfg=ExportConfig(calibration_size=64, calibration_method=method), run=run)
        assert export_onnx_static_int8(model, path, ctx)["calibrator"]["method"].lower() == method
        graph = onnx.load(str(path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        scales[method] = {n.input[0]: float(inits[n.input[1]]) for n in graph.node
                          if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    common = sorted(set(scales["minmax"]) & set(scales["entropy"]))
    minmax, entropy = (np.array([scales[m][k] for k in common]) for m in ("minmax", "entropy"))
    assert (entropy < 0.9 * minmax).any()  # ReLU outputs: the threshold cuts the long tail
    assert scales["percentile"] != scales["minmax"]


def test_a_calibration_size_above_the_split_is_said_and_recorded(raw_pixels, tmp_path, capsys):
    model, data = raw_pixels
    out = tmp_path / "run"
    assert main(["export", "--model", str(model), "--data", str(data), "--out", str(out), "--targets", "tflite_int8",
                 "--val-size", "200", "--calibration-size", "100000", "--no-sensitivity"]) == 0
    assert "--calibration-size 100000: the train split has 400 images; calibrating on all of them" in (
        capsys.readouterr().err)
    (art,) = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert art["lineage"]["conversion"]["calibration"]["size"] == 400


def test_a_curve_beside_a_budget_says_its_points_are_full_int8():
    """The curve converts the reference model full int8: the exported files may keep layers in float."""
    from edgeport.export.calibration_curve import _notes
    from edgeport.export.export import ExportConfig

    plain = ExportConfig(targets=("tflite_int8",))
    assert not any("full-int8" in n for n in _notes(plain, ["tflite_int8"]))
    for cfg in (ExportConfig(targets=("tflite_int8",), max_drop=1.0),
                ExportConfig(targets=("tflite_int8",), keep_float=("conv2d",))):
        assert any(n.startswith("every point is a full-int8 file") for n in _notes(cfg, ["tflite_int8"]))
