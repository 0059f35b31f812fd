"""`edgeport verify`: the CI gate passes a healthy run and names every artifact that was damaged."""

import json
import shutil

import numpy as np
import pytest

from edgeport.cli import main

# The tiny one-epoch model's int8 file agrees with Keras on ~98-99% of 300 images: loose thresholds that a
# healthy tiny run passes and a damaged file does not.
LOOSE = ["--max-drop", "10", "--min-agreement", "0.85"]


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    return run


def test_healthy_run_passes(run_copy, capsys):
    assert main(["verify", str(run_copy), *LOOSE, "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["passed"] and {a["name"] for a in verdict["artifacts"]} == {"tflite_fp32", "tflite_int8",
                                                                                "onnx_fp32"}
    fp32 = next(a for a in verdict["artifacts"] if a["name"] == "tflite_fp32")
    assert fp32["agreement"] > 0.99 and abs(fp32["drop_points"]) < 1


def test_perturbed_weights_fail_the_gate_by_name(run_copy, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    path = run_copy / "artifacts" / "onnx_fp32.onnx"
    model = onnx.load(str(path))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:  # shuffle every weight tensor: same sizes, wrong model
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.size > 16:
            init.CopyFrom(numpy_helper.from_array(rng.permutation(w.reshape(-1)).reshape(w.shape), init.name))
    onnx.save(model, str(path))

    assert main(["verify", str(run_copy), *LOOSE]) == 1
    out, err = capsys.readouterr()
    failing = [line for line in err.splitlines() if line.startswith("edgeport: verify failed:")]
    assert len(failing) == 1 and "onnx_fp32" in failing[0]
    assert "agreement" in failing[0] and "sha256 differs" in failing[0]
    assert "FAIL  onnx_fp32" in out and "PASS  tflite_fp32" in out


def test_truncated_file_fails_the_gate(run_copy, capsys):
    victim = run_copy / "artifacts" / "tflite_int8.tflite"
    victim.write_bytes(victim.read_bytes()[:2000])
    assert main(["verify", str(run_copy), *LOOSE]) == 1
    err = capsys.readouterr().err
    assert "verify failed: tflite_int8: failed to load or run" in err and "onnx_fp32" not in err


def test_default_thresholds_are_the_documented_ones():
    from edgeport.verify import VerifyConfig

    assert VerifyConfig().max_drop == 0.3 and VerifyConfig().min_agreement == 0.995


@pytest.mark.parametrize("argv, message", [
    (["verify", "{tmp}"], "no manifest.json here"),
    (["verify", "{run}", "--min-agreement", "1.5"], "--min-agreement is a fraction in [0, 1]"),
    (["verify", "{run}", "--max-drop", "-1"], "--max-drop is in percentage points and must be a finite number >= 0"),
    (["verify", "{run}", "--max-drop", "inf"], "must be a finite number >= 0, got 'inf'"),
    (["verify", "{run}", "--max-drop", "lots"], "--max-drop takes a number of percentage points, got 'lots'"),
    (["verify", "{noref}"], "no reference.npz here"),
])
def test_bad_verify_input_is_a_one_line_error(run_copy, tmp_path, capsys, argv, message):
    noref = tmp_path / "noref"
    shutil.copytree(run_copy, noref)
    (noref / "reference.npz").unlink()
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path / "empty")).replace("{run}", str(run_copy))
            .replace("{noref}", str(noref)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def _set_lineage_max_drop(run, name, points):
    path = run / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["artifacts"]:
        if entry["name"] == name:
            entry.setdefault("lineage", {})["max_drop"] = points
    path.write_text(json.dumps(manifest))


def test_variant_budget_replaces_max_drop(run_copy, capsys):
    # a negative budget: any file short of beating the reference by a point is over it
    _set_lineage_max_drop(run_copy, "tflite_int8", -1.0)
    assert main(["verify", str(run_copy), *LOOSE, "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    int8 = next(a for a in verdict["artifacts"] if a["name"] == "tflite_int8")
    assert not int8["passed"] and int8["budget_points"] == -1.0 and "allowed -1" in int8["reasons"][0]
    assert all(a["passed"] for a in verdict["artifacts"] if a["name"] != "tflite_int8")


def test_significant_forgives_noise_only(run_copy, capsys):
    _set_lineage_max_drop(run_copy, "tflite_int8", -1.0)
    assert main(["verify", str(run_copy), *LOOSE, "--significant", "--json"]) == 0  # a tiny change: p >= 0.05
    verdict = json.loads(capsys.readouterr().out)
    assert next(a for a in verdict["artifacts"] if a["name"] == "tflite_int8")["p_value"] >= 0.05
    victim = run_copy / "artifacts" / "tflite_int8.tflite"
    victim.write_bytes(victim.read_bytes()[:2000])
    assert main(["verify", str(run_copy), *LOOSE, "--significant"]) == 1  # a damaged file still fails
