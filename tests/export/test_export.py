import json

import numpy as np
import pytest

from edgeport.core import files
from edgeport.core.errors import ConfigError, ExportError, ModelFileError

pytest.importorskip("tensorflow")

FIELDS = {"name", "format", "precision", "path", "bytes", "gzip_bytes", "sha256", "inputs", "outputs", "lineage"}


def test_manifest_records_every_default_artifact(tiny_run):
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    names = [a["name"] for a in manifest["artifacts"]]
    assert names == ["tflite_fp32", "tflite_int8", "onnx_fp32"]
    for a in manifest["artifacts"]:
        assert FIELDS <= set(a), a["name"]
        path = tiny_run / a["path"]
        assert path.stat().st_size == a["bytes"] and files.sha256_file(path) == a["sha256"]
        assert 0 < a["gzip_bytes"] <= a["bytes"] * 1.01
        assert a["lineage"]["source_model"] == "model.keras"
        assert a["inputs"][0]["shape"][1:] == [28, 28, 1]
    assert manifest["source_model"]["sha256"] == files.sha256_file(tiny_run / "model.keras")
    assert "command" in manifest and "tensorflow" in manifest["packages"]


def test_int8_artifact_has_int8_io_and_quantisation_params(tiny_run):
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "tflite_int8")
    for spec in int8["inputs"] + int8["outputs"]:
        assert spec["dtype"] == "int8" and spec["scale"] > 0 and -128 <= spec["zero_point"] <= 127
    assert int8["lineage"]["conversion"]["calibration"]["size"] == 64
    assert int8["bytes"] < 0.5 * next(a for a in manifest["artifacts"] if a["name"] == "tflite_fp32")["bytes"]


def test_float_exports_validated_against_keras(tiny_run):
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["precision"] == "float32":
            assert a["validation"]["max_abs_diff"] <= 1e-4
            assert a["validation"]["agreement"] == 1.0


def test_onnx_passes_checker(artifacts):
    import onnx

    onnx.checker.check_model(str(artifacts["onnx_fp32"]), full_check=True)


def test_unknown_target_lists_valid_ones(tiny_run):
    from edgeport.export.export import ExportConfig, export_model

    with pytest.raises(ConfigError, match="expected one of: .*onnx_fp32.*tflite_int8"):
        export_model(tiny_run / "model.keras", tiny_run / "x", ExportConfig(targets=("coreml",)))


def test_zero_calibration_images_rejected(tiny_run):
    from edgeport.export.export import ExportConfig, export_model

    with pytest.raises(ConfigError, match="calibration_size"):
        export_model(tiny_run / "model.keras", tiny_run / "x", ExportConfig(calibration_size=0))


@pytest.mark.parametrize("content", [None, b"", b"PK\x03\x04 truncated zip", b"not a model at all"])
def test_bad_keras_model_file(tmp_path, content):
    from edgeport.export.export import ExportConfig, export_model

    path = tmp_path / "model.keras"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match="model.keras"):
        export_model(path, tmp_path / "out", ExportConfig(targets=("tflite_fp32",)))


def test_truncated_keras_model(tiny_run, tmp_path):
    from edgeport.export.export import ExportConfig, export_model

    bad = tmp_path / "model.keras"
    raw = (tiny_run / "model.keras").read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="not a loadable Keras model"):
        export_model(bad, tmp_path / "out", ExportConfig(targets=("tflite_fp32",)))


def test_failed_conversion_leaves_no_file(tiny_run, tmp_path, monkeypatch):
    """A converter that writes half a file then dies: nothing with the final name, no temp file."""
    from edgeport.export import targets
    from edgeport.export.export import ExportConfig, export_model

    targets.target_names()

    def broken(model, path, ctx):
        path.write_bytes(b"TFL3 half a model")
        raise RuntimeError("simulated converter crash")

    monkeypatch.setitem(targets.TARGETS, "tflite_fp32", targets.TARGETS["tflite_fp32"].__class__(
        **{**targets.TARGETS["tflite_fp32"].__dict__, "fn": broken}))
    with pytest.raises(ExportError, match="tflite_fp32: conversion failed .*simulated"):
        export_model(tiny_run / "model.keras", tmp_path, ExportConfig(targets=("tflite_fp32",)))
    assert list((tmp_path / "artifacts").iterdir()) == []


def test_export_that_fails_validation_leaves_no_file(tiny_run, tmp_path, monkeypatch):
    """A float file whose outputs differ from Keras is rejected by validate-after-write."""
    from edgeport.export import targets
    from edgeport.export.export import ExportConfig, export_model

    targets.target_names()
    int8 = targets.TARGETS["tflite_int8"]
    fake = targets.Target(**{**int8.__dict__, "name": "tflite_fp32", "atol": 1e-6})  # int8 claiming float
    monkeypatch.setitem(targets.TARGETS, "tflite_fp32", fake)
    with pytest.raises(ExportError, match="differ from Keras"):
        export_model(tiny_run / "model.keras", tmp_path, ExportConfig(targets=("tflite_fp32",), calibration_size=8))
    assert list((tmp_path / "artifacts").iterdir()) == []


def test_keras_and_exports_agree_on_real_digits(tiny_run, artifacts, mnist_test):
    from edgeport.runtime import load

    with np.load(tiny_run / "reference.npz") as z:
        ref = z["probs"]
    images, _ = mnist_test
    for name in ("tflite_fp32", "onnx_fp32"):
        probs = load(artifacts[name]).predict(images)
        assert np.abs(probs - ref).max() <= 1e-4, name


def test_a_target_failing_the_gate_keeps_the_others(tiny_run, tmp_path, monkeypatch, capsys):
    """int8 below its agreement threshold: recorded as failed (no file), fp32 kept, exit 1 at the end; eval, the
    report and verify name it as not exported instead of stopping."""
    import shutil

    from edgeport.cli import main
    from edgeport.export import targets

    targets.target_names()
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    strict = targets.Target(**{**targets.TARGETS["tflite_int8"].__dict__, "min_agreement": 1.01})  # cannot pass
    monkeypatch.setitem(targets.TARGETS, "tflite_int8", strict)
    assert main(["export", str(run), "--targets", "tflite_fp32,tflite_int8", "--calibration-size", "16"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "edgeport: not exported: tflite_int8: top-1 agrees with Keras" in err
    manifest = json.loads((run / "manifest.json").read_text())
    assert [a["name"] for a in manifest["artifacts"]] == ["tflite_fp32"]
    (failed,) = manifest["failed"]
    assert failed["target"] == "tflite_int8" and "below 101%" in failed["error"]
    assert not (run / "artifacts" / "tflite_int8.tflite").exists()  # not even the earlier export's file
    assert main(["eval", str(run)]) == 1
    rows = {r["name"]: r for r in json.loads((run / "report.json").read_text())["artifacts"]}
    assert rows["tflite_fp32"]["status"] == "ok" and rows["tflite_int8"]["status"] == "failed"
    assert "not exported" in (run / "report.md").read_text()
    capsys.readouterr()
    assert main(["verify", str(run), "--min-agreement", "0"]) == 1
    out = capsys.readouterr()
    assert "PASS  tflite_fp32" in out.out
    assert "verify failed: tflite_int8: not exported: tflite_int8: top-1 agrees" in out.err
