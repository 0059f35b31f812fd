"""export/qdq_weights.py: float weights behind QuantizeLinear become int8 initializers, same outputs."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeport.export.qdq_weights import int8_weights  # noqa: E402


def _qdq_matmul(per_axis: bool):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 32)).astype(np.float32)
    scale = (np.abs(w).max(axis=0) / 127 if per_axis else np.array(np.abs(w).max() / 127)).astype(np.float32)
    zero = np.zeros(scale.shape, np.int8)
    axis = [helper.make_attribute("axis", 1)] if per_axis else []
    q = helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"])
    dq = helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"])
    q.attribute.extend(axis)
    dq.attribute.extend(axis)
    graph = helper.make_graph(
        [q, dq, helper.make_node("MatMul", ["x", "wd"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 32])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zero, "z")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("per_axis", [False, True])
def test_weights_become_int8_and_outputs_stay(per_axis):
    model = _qdq_matmul(per_axis)
    x = np.random.default_rng(1).normal(size=(8, 64)).astype(np.float32)
    before, size = _run(model, x), model.ByteSize()
    stats = int8_weights(model)
    onnx.checker.check_model(model)
    assert stats == {"int8_weights": 1, "bytes_saved": 64 * 32 * 3}
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear", "MatMul"]
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert "w" not in weights and weights["w_int8"].dtype == np.int8 and weights["w_int8"].shape == (64, 32)
    assert model.ByteSize() < size / 3
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-5)


def test_activation_quantizers_are_left_alone():
    model = _qdq_matmul(False)
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"])
    model.graph.node.insert(0, q)
    assert int8_weights(model)["int8_weights"] == 1
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == 1
