"""Each model's own memory, measured in fresh child processes: properties, never exact megabytes."""

import sys

import numpy as np
import pytest

from edgeport.runtime.memory import measure_baseline, measure_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is read from Linux's /proc")


def _onnx_with_weights(path, classes: int):
    """A valid image classifier whose one weight matrix is 784 x `classes` float32: its size is what we measure."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((784, classes)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 784], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 28, 28, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], [w, shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("name", ["tflite_int8", "onnx_fp32"])
def test_model_memory_is_the_child_peak_minus_the_baseline(artifacts, name):
    m = measure_memory(artifacts[name], threads=1, repeats=2)
    assert m.error is None and m.method.startswith("VmHWM")
    assert len(m.samples_mb) == 2 and len(m.baseline_samples_mb) == 2
    assert m.model_peak_mb == pytest.approx(m.peak_mb - m.baseline_mb, abs=2e-3)
    assert 0 <= m.model_peak_mb < 20  # a ~20 KB model: megabytes at most, not the 100s of the test process
    assert m.spread_mb == pytest.approx(max(m.samples_mb) - min(m.samples_mb), abs=2e-3)


def test_a_model_with_more_weights_measures_that_much_more(artifacts, tmp_path):
    big = _onnx_with_weights(tmp_path / "big.onnx", classes=10000)  # 784 x 10000 x 4 bytes = 29.9 MiB of weights
    weights_mb = 784 * 10000 * 4 / 2**20
    m_big = measure_memory(big, threads=1, repeats=1)
    m_small = measure_memory(artifacts["onnx_fp32"], threads=1, repeats=1)
    assert m_big.model_peak_mb >= 0.9 * weights_mb, m_big
    assert m_big.model_peak_mb - m_small.model_peak_mb >= 0.8 * weights_mb


def test_larger_batches_are_measured_after_batch_one(artifacts):
    m = measure_memory(artifacts["onnx_fp32"], threads=1, batch_sizes=(1, 64), repeats=1)
    assert list(m.by_batch) == ["64"] and m.by_batch["64"] >= m.model_peak_mb - 1e-3  # a peak only grows


def test_the_baseline_is_measured_once_per_engine():
    measure_baseline.cache_clear()
    a = measure_baseline("edgeport.runtime.onnxrt", 1)
    assert measure_baseline("edgeport.runtime.onnxrt", 1) is a
    assert a["median"] > 0 and len(a["samples"]) == 1


def test_a_file_that_does_not_load_gives_the_reason_not_a_crash(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model" * 10)
    m = measure_memory(bad, repeats=1)
    assert m.model_peak_mb is None and "not a valid ONNX model" in m.error


def test_tflm_keeps_the_exact_arena(artifacts):
    pytest.importorskip("tflite_micro")
    from edgeport.runtime import load

    c_file = artifacts["tflite_int8"].with_suffix(".c")  # the runtime reads a C array back into model bytes
    data = artifacts["tflite_int8"].read_bytes()
    c_file.write_text("const unsigned char m[] = {" + ",".join(str(b) for b in data) + "};\n")
    try:
        m = measure_memory(c_file)
        assert m.arena_bytes == load(artifacts["tflite_int8"], backend="tflm").arena_bytes()
        assert m.model_peak_mb == pytest.approx(m.arena_bytes / 2**20, abs=1e-4) and "arena" in m.method
    finally:
        c_file.unlink()
