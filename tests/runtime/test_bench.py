"""The benchmark methodology, MAC counting and cross-format fidelity: properties, never timings."""

import sys

import numpy as np
import pytest

from edgeport.core.errors import ConfigError, InputError
from edgeport.runtime import load
from edgeport.runtime.bench import BenchConfig, Interrupted, benchmark_file, check_images_fit, headline, latency_stats
from edgeport.runtime.fidelity import compare
from edgeport.runtime.macs import count_macs

FAST = BenchConfig(runs=20, warmup=2, threads=(1, 2), batch_sizes=(1, 32), throughput_runs=3, overhead_runs=20,
                   memory_repeats=1)

# models.tiny on 28x28x1: conv 3x3x1->8 (26x26 out), pool, conv 3x3x8->16 (11x11 out), pool, dense 400->10.
TINY_MACS = 26 * 26 * 8 * (3 * 3 * 1) + 11 * 11 * 16 * (3 * 3 * 8) + 400 * 10


@pytest.mark.parametrize("name", ["tflite_fp32", "tflite_int8", "onnx_fp32"])
def test_macs_are_counted_from_each_graph(artifacts, name):
    mc = count_macs(artifacts[name])
    assert mc.macs == TINY_MACS, mc
    assert len(mc.by_op) == 2 and mc.uncounted_ops  # convolutions + dense counted; pooling etc. listed


def test_onnx_macs_degrade_clearly_without_the_onnx_package(artifacts, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # what an install without the [report] extra sees
    mc = count_macs(artifacts["onnx_fp32"])
    assert mc.macs is None and "edgeport[report]" in mc.note


def test_macs_of_a_file_that_is_not_a_model_is_none_not_a_crash(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"\0" * 64)
    assert count_macs(bad).macs is None


@pytest.mark.parametrize("name", ["tflite_fp32", "tflite_int8", "onnx_fp32"])
def test_benchmark_file_reports_the_whole_methodology(artifacts, mnist_test, name):
    images, _ = mnist_test
    b = benchmark_file(artifacts[name], images, FAST)
    assert [e["threads"] for e in b["by_threads"]] == [1, 2]
    for e in b["by_threads"]:
        lat = e["latency_ms"]
        assert lat["n"] == 20 and 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert e["load_ms"] > 0 and e["first_ms"] > 0
        assert e["overhead"]["ratio"] > 0 and e["overhead"]["pairs"] == 20 and e["overhead"]["predict_p50_ms"] > 0
        assert [t["batch"] for t in e["throughput"]] == [1, 32]
        assert all(t["images_per_s"] > 0 and t["calls"] == 3 for t in e["throughput"])  # dynamic batch files
        assert e["gmacs_per_s"] == pytest.approx(TINY_MACS / (lat["p50"] * 1e6))
    assert b["memory"]["model_peak_mb"] >= 0 and b["memory"]["threads"] == 1 and b["macs"]["macs"] == TINY_MACS
    h = headline(b)
    assert h["threads"] == 1 and h["best_batch"] in (1, 32) and h["overhead_ratio"] > 0


def test_raw_engine_call_gives_the_same_output_as_the_wrapper(artifacts, mnist_test):
    images, _ = mnist_test
    for name in ("tflite_int8", "onnx_fp32"):
        m = load(artifacts[name])
        x = m.prepare(images[:1])
        assert np.array_equal(np.asarray(m.raw_call(x)()).reshape(-1), m._invoke(x).reshape(-1))


def test_time_budget_replaces_the_fixed_count(artifacts):
    cfg = BenchConfig(runs=1, warmup=0, threads=(1,), batch_sizes=(1,), time_budget_s=0.05)
    e = benchmark_file(artifacts["tflite_fp32"], None, cfg)["by_threads"][0]
    assert e["latency_ms"]["n"] > 1  # more than `runs`: the budget decided


@pytest.mark.parametrize("kwargs, message", [
    ({"time_budget_s": 0}, "--time-budget must be > 0"),
    ({"runs": 0}, "run counts must be >= 1"),
    ({"warmup": -1}, "--warmup must be >= 0"),
    ({"threads": (0,)}, "--threads must be"),
    ({"batch_sizes": ()}, "--batch-sizes must be"),
    ({"memory_repeats": -1}, "--memory-repeats must be >= 0"),
])
def test_bad_bench_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BenchConfig(**kwargs)


def test_fixed_batch_file_says_so_instead_of_throughput(artifacts, tmp_path):
    onnx = pytest.importorskip("onnx")
    m = onnx.load(str(artifacts["onnx_fp32"]))
    for vi in (*m.graph.input, *m.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 1
    fixed = tmp_path / "fixed.onnx"
    onnx.save(m, str(fixed))
    e = benchmark_file(fixed, None, FAST)["by_threads"][0]
    t32 = next(t for t in e["throughput"] if t["batch"] == 32)
    assert t32["images_per_s"] is None and "fixed batch of 1" in t32["note"]
    assert e["throughput"][0]["images_per_s"] > 0


def test_ctrl_c_keeps_what_was_measured(artifacts, monkeypatch):
    from edgeport.runtime.litert import LiteRTModel

    calls = {"n": 0}
    real = LiteRTModel._invoke

    def flaky(self, x):
        calls["n"] += 1
        if calls["n"] == 1 + 2 + 10:  # first + warmup + 10 timed calls, then Ctrl-C
            raise KeyboardInterrupt
        return real(self, x)

    monkeypatch.setattr(LiteRTModel, "_invoke", flaky)
    with pytest.raises(Interrupted) as info:
        benchmark_file(artifacts["tflite_fp32"], None, FAST)
    partial = info.value.partial
    assert partial["interrupted"] is True and partial["by_threads"][0]["latency_ms"]["n"] == 9
    assert partial["memory"] is None  # measured after the latencies: not reached


def test_latency_stats_of_nothing_is_none():
    assert latency_stats([]) is None
    s = latency_stats([1.0, 2.0, 3.0, 4.0])
    assert s["min"] == 1.0 and s["max"] == 4.0 and s["p50"] == 2.5 and s["n"] == 4


def test_compare_finds_every_disagreement():
    labels = np.array([0, 1, 2, 3, 4])
    preds = {"ref": np.array([0, 1, 2, 3, 4]), "a": np.array([0, 1, 2, 3, 0]), "b": np.array([0, 2, 2, 3, 0])}
    f = compare(preds, labels)
    assert f["names"] == ["ref", "a", "b"]
    m = np.array(f["pairwise_agreement"])
    assert np.allclose(np.diag(m), 1) and np.allclose(m, m.T) and m[0, 1] == pytest.approx(0.8)
    d = f["disagreements"]
    assert d["count"] == 2 and d["indices"] == [1, 4] and d["labels"] == [1, 4]
    assert d["predictions"]["b"] == [2, 0] and d["all_wrong"] == 0
    assert compare(preds, labels, max_indices=1)["disagreements"]["truncated"] is True


def test_a_model_for_other_images_needs_data_dir(artifacts, tmp_path, mnist_test):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((32 * 32, 10), np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 32 * 32], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32, 32, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [w, shape])
    path = tmp_path / "cifar_like.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    images, _ = mnist_test
    with pytest.raises(InputError, match="does not take the 28x28x1 images of bundled MNIST; pass --data"):
        check_images_fit(load(path), images, "bundled MNIST", True)
    assert count_macs(path).macs == 32 * 32 * 10  # a foreign graph is counted too
