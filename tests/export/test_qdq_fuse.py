"""export/qdq_fuse.py: a QAT-style QDQ graph (float bias, Relu before QuantizeLinear) becomes one onnxruntime
integer kernel per layer, and computes the same values."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeport.export.qdq_fuse import (  # noqa: E402
    float_layers_after_optimisation,
    fuse_activation_into_quantize,
    fuse_for_integer_kernels,
)

OUT_SCALE = 0.05


def _qat_graph(layer: str = "conv", act: str = "relu", out_zero: int = 120):
    """x -> Q/DQ (uint8) -> layer (int8 weight DQ, float bias) -> act -> Q/DQ (uint8, out_zero) -> y, as tf2onnx
    writes a QAT model (tfmot ranges after a ReLU that do not start at 0 give out_zero > 0)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(1 / 255, np.float32), "xs"),
             numpy_helper.from_array(np.array(0, np.uint8), "xz"),
             numpy_helper.from_array(np.array(OUT_SCALE, np.float32), "ys"),
             numpy_helper.from_array(np.array(out_zero, np.uint8), "yz")]
    if layer == "conv":
        w = rng.integers(-127, 128, size=(8, 2, 3, 3)).astype(np.int8)
        w_axis, x_shape, y_shape = 0, [1, 2, 6, 6], [1, 8, 4, 4]
        compute = [helper.make_node("Conv", ["xd", "wd", "b"], ["h"])]
    else:
        w = rng.integers(-127, 128, size=(16, 8)).astype(np.int8)
        w_axis, x_shape, y_shape = 1, [1, 16], [1, 8]
        compute = [helper.make_node("MatMul", ["xd", "wd"], ["m"]), helper.make_node("Add", ["m", "b"], ["h"])]
    inits += [numpy_helper.from_array(w, "w"),
              numpy_helper.from_array(np.full(8, 0.002, np.float32), "ws"),
              numpy_helper.from_array(np.zeros(8, np.int8), "wz"),
              numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "b")]
    if act == "relu6":
        inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"),
                  numpy_helper.from_array(np.array(6, np.float32), "hi")]
        activation = helper.make_node("Clip", ["h", "lo", "hi"], ["a"])
    else:
        activation = helper.make_node("Relu", ["h"], ["a"])
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=w_axis),
             *compute, activation,
             helper.make_node("QuantizeLinear", ["a", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), x_shape


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize(("layer", "act", "out_zero"), [("conv", "relu", 120), ("conv", "relu6", 120),
                                                        ("matmul", "relu", 120), ("conv", "relu", 0)])
def test_layer_becomes_an_integer_kernel_with_the_same_outputs(layer, act, out_zero):
    model, shape = _qat_graph(layer, act, out_zero)
    x = np.random.default_rng(1).random(shape, np.float32)
    before = _run(model, x)
    if out_zero > 0:  # onnxruntime's own ReluQuantFusion handles a range starting at 0, not this one
        assert float_layers_after_optimisation(model.SerializeToString())
    stats = fuse_for_integer_kernels(model)
    onnx.checker.check_model(model, full_check=True)
    assert stats["activations_moved"] == 1 and stats["int32_biases"] == (1 if layer == "conv" else 0)
    assert float_layers_after_optimisation(model.SerializeToString()) == []
    ops = [n.op_type for n in model.graph.node]
    assert "Relu" not in ops and ops.count("Clip") == (0 if (act, out_zero) == ("relu", 0) else 1)
    after = _run(model, x)
    assert (after >= 0).all() and (after <= (6 if act == "relu6" else np.inf)).all()
    np.testing.assert_allclose(after, before, atol=OUT_SCALE + 1e-6)  # at most one quantisation step apart


def test_a_relu_not_followed_by_a_quantizer_is_left_alone():
    model, _ = _qat_graph()
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    model.graph.output.append(helper.make_tensor_value_info(relu.output[0], TensorProto.FLOAT, None))
    assert fuse_activation_into_quantize(model) == 0
    assert "Relu" in [n.op_type for n in model.graph.node]
