"""report.json / report.md / report.html from `edgeport bench` on a run folder, and bench's bad input."""

import base64
import json
import re
import shutil

import pytest

from edgeport.cli import main

FAST = ["--runs", "5", "--warmup", "1", "--threads", "1", "--batch-sizes", "1,8", "--memory-repeats", "1"]


@pytest.fixture(scope="module")
def benched(tiny_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("benched") / "run"
    shutil.copytree(tiny_run, run)
    assert main(["bench", str(run), *FAST]) == 0
    return run


def test_report_json_has_the_documented_layout(benched):
    r = json.loads((benched / "report.json").read_text())
    assert {"run", "dataset", "reference", "bench", "artifacts", "fidelity", "environment"} <= set(r)
    assert len(r["reference"]["confusion"]) == 10 and r["bench"]["threads"] == [1]
    names = [a["name"] for a in r["artifacts"]]
    assert r["fidelity"]["names"] == ["reference", *names]
    assert len(r["fidelity"]["pairwise_agreement"]) == len(names) + 1
    for a in r["artifacts"]:
        e = a["benchmark"]["by_threads"][0]
        assert {"load_ms", "first_ms", "latency_ms", "overhead", "throughput", "gmacs_per_s"} <= set(e)
        assert a["benchmark"]["macs"]["macs"] > 0 and a["benchmark"]["memory"]["baseline_mb"] > 0
        assert a["model_peak_mb"] == a["benchmark"]["memory"]["model_peak_mb"] >= 0
        assert a["latency_ms"] == e["latency_ms"] and a["overhead_ratio"] == e["overhead"]["ratio"]
        assert len(a["per_class_accuracy"]) == 10 and sum(map(sum, a["confusion"])) == r["dataset"]["test_images"]
    dis = r["fidelity"]["disagreements"]
    assert len(dis["indices"]) == min(dis["count"], 2000)
    for name in r["fidelity"]["names"][1:]:  # agreement with the reference is the matrix's first row
        row = next(a for a in r["artifacts"] if a["name"] == name)
        assert r["fidelity"]["pairwise_agreement"][0][r["fidelity"]["names"].index(name)] == \
            pytest.approx(row["agreement"])


def test_report_md_has_each_section(benched):
    md = (benched / "report.md").read_text()
    for heading in ("## Benchmark", "## Fidelity", "| tflite_int8 | 1 |", "Images on which the files disagree"):
        assert heading in md


def test_report_html_is_self_contained_with_valid_pngs(benched):
    page = (benched / "report.html").read_text()
    srcs = re.findall(r"<img[^>]*\ssrc='([^']*)'", page)
    assert len(srcs) == page.count("<img")
    assert len(srcs) >= 5  # curves, two confusion matrices, two trade-off plots (+ the disagreement grid)
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http://" not in page and "https://" not in page  # nothing to fetch


def test_report_html_without_matplotlib_says_so(benched, monkeypatch):
    import sys

    from edgeport.runtime.report_html import to_html

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    page = to_html(json.loads((benched / "report.json").read_text()), benched)
    assert "Plots left out: matplotlib is not installed" in page and "<table>" in page


def test_pareto_front():
    from edgeport.runtime.report_html import pareto_front

    # (size, accuracy): c is dominated by a (bigger and worse), d by b
    xs, ys = [1, 2, 3, 4], [0.90, 0.95, 0.85, 0.94]
    assert pareto_front(xs, ys, maximize_y=True) == [0, 1]
    assert pareto_front(xs, [5, 3, 4, 1], maximize_y=False) == [0, 1, 3]


def test_bench_json_of_a_loose_file_has_the_detail(artifacts, capsys):
    assert main(["bench", str(artifacts["onnx_fp32"]), "--test-limit", "50", *FAST, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["artifacts"][0]
    assert row["benchmark"]["by_threads"][0]["overhead"]["ratio"] > 0 and row["gmacs_per_s"] > 0


def test_ctrl_c_during_bench_prints_what_was_measured(artifacts, monkeypatch, capsys):
    from edgeport.runtime.litert import LiteRTModel

    real, calls = LiteRTModel._invoke, {"n": 0}

    def flaky(self, x):
        calls["n"] += 1
        if calls["n"] == 60:  # after evaluation (one batch) and part of the benchmark
            raise KeyboardInterrupt
        return real(self, x)

    monkeypatch.setattr(LiteRTModel, "_invoke", flaky)
    code = main(["bench", str(artifacts["tflite_fp32"]), "--test-limit", "50", "--runs", "200", "--threads", "1",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 130 and "measurements so far are above" in err
    partial = json.loads(out)
    assert partial["interrupted"] and partial["artifacts"][0]["status"] == "interrupted"
    assert partial["artifacts"][0]["benchmark"]["by_threads"][0]["latency_ms"]["n"] > 0


@pytest.mark.parametrize("argv, message", [
    (["bench", "{onnx}", "--time-budget", "0"], "--time-budget must be > 0"),
    (["bench", "{onnx}", "--threads", "one"], "--threads takes comma-separated whole numbers"),
    (["bench", "{tmp}/notes.tflite"], "notes.tflite: not a valid TFLite model"),
    (["bench", "{tmp}"], "no manifest.json here"),
])
def test_bad_bench_input_is_a_one_line_error(artifacts, tmp_path, capsys, argv, message):
    (tmp_path / "notes.tflite").write_text("shopping list, not a model\n" * 20)
    argv = [a.replace("{onnx}", str(artifacts["onnx_fp32"])).replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_bench_a_model_for_other_images_without_data_measures_speed_only(tmp_path, capsys):
    """Nothing labelled fits a 32x32 RGB model: latency, throughput, size and MACs on inputs of its own shape, and
    the report says accuracy was not measured (exit 0)."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.zeros((32 * 32 * 3, 10), np.float32), "w"),
             numpy_helper.from_array(np.array([-1, 32 * 32 * 3], np.int64), "shape")]
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    path = tmp_path / "rgb32.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    assert main(["bench", str(path), "--runs", "5", "--warmup", "1", "--threads", "1", "--batch-sizes", "1",
                 "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    row = report["artifacts"][0]
    assert row["latency_ms"]["n"] == 5 and row["benchmark"]["macs"]["macs"] == 32 * 32 * 3 * 10
    assert "accuracy" not in row and "not measured" in row["accuracy_note"]
    assert "accuracy not measured" in captured.err and "no edgeport metadata" in captured.err
