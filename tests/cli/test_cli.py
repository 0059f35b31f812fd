"""The CLI end to end: success paths write reports; bad input is one line on stderr and exit code 2."""

import json
import shutil

import pytest

from edgeport.cli import main

pytest.importorskip("tensorflow")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeport: error:"), err
    return err[0]


def test_run_end_to_end_writes_report(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--out", str(out), "--model", "tiny", "--epochs", "1", "--augment-shift", "0",
                 "--train-limit", "1500", "--val-size", "300", "--test-limit", "200", "--calibration-size", "32",
                 "--runs", "5", "--warmup", "1", "--targets", "tflite_fp32,tflite_int8,onnx_fp32"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert 0 < report["reference"]["accuracy"] <= 1
    assert [a["name"] for a in report["artifacts"]] == ["tflite_fp32", "tflite_int8", "onnx_fp32"]
    for a in report["artifacts"]:
        assert {"name", "format", "precision", "path", "bytes", "gzip_bytes", "accuracy", "agreement"} <= set(a)
        assert 0 <= a["accuracy"] <= 1 and 0 <= a["agreement"] <= 1
        assert set(a["latency_ms"]) >= {"p50", "p90", "p99"}
    assert report["dataset"]["test_images"] == 200
    assert "| tflite_int8 |" in (out / "report.md").read_text()
    assert "tflite_int8" in capsys.readouterr().out


def test_eval_and_bench_on_a_run_folder(tiny_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    assert main(["eval", str(run)]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["bench"] is None and all(a["status"] == "ok" for a in report["artifacts"])
    capsys.readouterr()
    assert main(["bench", str(run), "--runs", "5", "--warmup", "1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert all("p50" in a["latency_ms"] for a in printed["artifacts"])
    assert json.loads((run / "report.json").read_text())["bench"]["runs"] == 5


def test_bench_a_loose_file(artifacts, capsys):
    assert main(["bench", str(artifacts["tflite_int8"]), "--test-limit", "100", "--runs", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["artifacts"][0]["format"] == "tflite" and report["dataset"]["test_images"] == 100


def test_damaged_artifact_is_reported_not_fatal(tiny_run, tmp_path, capsys):
    run = tmp_path / "damaged"
    shutil.copytree(tiny_run, run)
    victim = run / "artifacts" / "onnx_fp32.onnx"
    victim.write_bytes(victim.read_bytes()[:1000])
    assert main(["eval", str(run)]) == 1
    rows = {a["name"]: a for a in json.loads((run / "report.json").read_text())["artifacts"]}
    assert rows["onnx_fp32"]["status"] == "failed" and "not a valid ONNX" in rows["onnx_fp32"]["error"]
    assert rows["tflite_fp32"]["status"] == "ok"


@pytest.mark.parametrize("argv, message", [
    (["train", "--out", "{tmp}/r", "--model", "nope"], "unknown model 'nope'; expected one of"),
    (["train", "--out", "{tmp}/r", "--data-dir", "{tmp}"], "no dataset here"),
    (["train", "--out", "{tmp}/r", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "--out", "{tmp}/r", "--test-limit", "0"], "--test-limit must be >= 1, got 0"),
    (["train", "--out", "{tmp}/r", "--test-fraction", "0"], "--test-fraction must be in (0, 1), got 0"),
    (["train", "--out", "{tmp}/afile/r"], "cannot write to output folder"),
    (["export", "{tmp}"], "model.keras: Keras model file not found"),
    (["export", "{tmp}", "--targets", "tflite_fp64"], "unknown export target 'tflite_fp64'"),
    (["eval", "{tmp}"], "no manifest.json here"),
    (["bench", "{tmp}/model.pt"], "unknown model format '.pt'"),
    (["bench", "{tmp}/missing.tflite"], "missing.tflite: model file not found"),
    (["bench", "{tmp}/afile.onnx"], "afile.onnx: not a valid ONNX model"),
])
def test_bad_input_is_a_one_line_error(tmp_path, capsys, argv, message):
    (tmp_path / "afile").write_text("a file where a folder should be")
    (tmp_path / "afile.onnx").write_text("not onnx")
    (tmp_path / "model.pt").write_text("x")
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2
    assert message in one_line_error(capsys)


def test_interrupted_run_leaves_nothing_that_looks_complete(tiny_run, tmp_path, monkeypatch, capsys):
    """Ctrl-C during export: the old manifest and report are gone and no artifact is half-written."""
    from edgeport.export import targets

    run = tmp_path / "interrupted"
    shutil.copytree(tiny_run, run)
    (run / "report.json").write_text("{}")
    shutil.rmtree(run / "artifacts")
    targets.target_names()

    def interrupted(model, path, ctx):
        path.write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setitem(targets.TARGETS, "onnx_fp32", targets.Target(
        **{**targets.TARGETS["onnx_fp32"].__dict__, "fn": interrupted}))
    def trained(cfg, out):  # what training writes, without training (the earlier run's files were replaced)
        for name in ("model.keras", "train.json", "reference.npz"):
            shutil.copyfile(tiny_run / name, out / name)

    monkeypatch.setattr("edgeport.train.fit.train", trained)
    code = main(["run", "--out", str(run), "--test-limit", "300", "--train-limit", "2500",
                 "--val-size", "500", "--targets", "tflite_fp32,tflite_int8,onnx_fp32"])
    assert code == 130
    assert not (run / "manifest.json").exists() and not (run / "report.json").exists()
    assert sorted(p.name for p in (run / "artifacts").iterdir()) == ["tflite_fp32.tflite", "tflite_int8.tflite"]


def test_quick_is_the_basic_path_on_a_subset(monkeypatch, tmp_path):
    """--quick: three basic files, small subset, one-thread batch-1 bench; --quick --recipe default: the matrix."""
    seen = {}

    def fake_run(out, train_cfg, export_cfg, bench_cfg, recipe, executor, import_cfg):
        seen.update(train=train_cfg, export=export_cfg, bench=bench_cfg, recipe=recipe, executor=executor,
                    imported=import_cfg)
        return {"artifacts": [], "pipeline_seconds": 0.0, "run": "x", "reference": {}, "dataset": {}}

    monkeypatch.setattr("edgeport.pipeline.run_pipeline", fake_run)
    monkeypatch.setattr("edgeport.runtime.report.print_table", lambda report: None)
    assert main(["run", "--quick", "--out", str(tmp_path / "q")]) == 0
    assert seen["executor"] is None  # no --ray: here, and Ray is not imported
    assert seen["imported"] is None  # a registered model is trained
    assert seen["recipe"] is None and seen["export"].targets == ("tflite_fp32", "tflite_int8", "onnx_fp32")
    assert seen["train"].data.train_limit and seen["train"].data.train_limit < 60000 and seen["train"].data.test_limit
    assert seen["bench"].threads == (1,) and seen["bench"].batch_sizes == (1,)
    assert main(["run", "--quick", "--recipe", "default", "--out", str(tmp_path / "q")]) == 0
    assert len(seen["recipe"].artifact_names()) >= 15


def test_train_flags_reach_the_config(monkeypatch, tmp_path):
    from pathlib import Path

    from edgeport.train.fit import TrainResult

    seen = {}

    def fake_train(cfg, out):
        seen["cfg"] = cfg
        return TrainResult(Path(out) / "model.keras", 0.5, 0.5, 1.0)

    monkeypatch.setattr("edgeport.train.fit.train", fake_train)
    assert main(["train", "--out", str(tmp_path / "t"), "--model", "mobilenet_v2", "--augment-shift", "0"]) == 0
    assert seen["cfg"].model == "mobilenet_v2" and seen["cfg"].augment_shift == 0
    assert main(["train", "--out", str(tmp_path / "t")]) == 0 and seen["cfg"].augment_shift == 2  # the default
    assert seen["cfg"].data.val_size is None
    assert main(["train", "--out", str(tmp_path / "t"), "--val-size", "0"]) == 0  # no validation split: not dropped
    assert seen["cfg"].data.val_size == 0


def test_a_loose_int8_file_is_called_int8_not_by_its_float_io(tiny_run, artifacts, tmp_path, capsys):
    """No manifest says a loose file's precision: an ONNX QDQ file has float I/O yet computes in int8."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["export", str(run), "--targets", "onnx_static_int8", "--no-sensitivity"]) == 0
    files = [run / "artifacts" / "onnx_static_int8.onnx", artifacts["tflite_int8"], artifacts["onnx_fp32"]]
    capsys.readouterr()
    assert main(["eval", *map(str, files), "--test-limit", "50", "--json"]) == 0
    rows = {r["name"]: r["precision"] for r in json.loads(capsys.readouterr().out)["artifacts"]}
    assert rows == {"onnx_static_int8.onnx": "int8", "tflite_int8.tflite": "int8", "onnx_fp32.onnx": "float32"}
