"""Store a QDQ ONNX graph's weights as int8: QuantizeLinear(float initializer) becomes an int8 initializer.

tf2onnx writes a QAT model's weights as float32 initializers followed by QuantizeLinear -> DequantizeLinear.
onnxruntime fuses DequantizeLinear(int8 initializer) -> Conv/MatMul/Gemm into integer kernels, so quantising each
such weight once at export (the same rounding, half to even, and saturation as QuantizeLinear) gives a file of
int8 size that runs int8 kernels and computes the same values.
"""

from __future__ import annotations

import numpy as np

_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


def _quantise(w: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    if scale.ndim == 1 and scale.size > 1:  # per-axis: line the scale up with `axis` of the weight
        shape = [1] * w.ndim
        shape[axis % w.ndim] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    lo, hi = _RANGES[zero.dtype]
    q = np.rint(w / scale) + zero.astype(np.int32)
    return np.clip(q, lo, hi).astype(zero.dtype)


def int8_weights(model) -> dict:
    """Rewrite `model` (an onnx ModelProto) in place; return how many weights became int8 and the bytes saved."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded, saved, drop = 0, 0, []
    for node in list(model.graph.node):
        if node.op_type != "QuantizeLinear" or node.input[0] not in inits or len(node.input) < 3:
            continue
        if node.input[1] not in inits or node.input[2] not in inits:
            continue
        after = consumers.get(node.output[0], [])
        if not after or any(n.op_type != "DequantizeLinear" for n in after):
            continue
        w = numpy_helper.to_array(inits[node.input[0]])
        if w.dtype != np.float32:
            continue
        scale = numpy_helper.to_array(inits[node.input[1]])
        zero = numpy_helper.to_array(inits[node.input[2]])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        q = _quantise(w, scale, zero, axis)
        q_name = f"{node.input[0]}_int8"
        model.graph.initializer.append(numpy_helper.from_array(q, q_name))
        for dq in after:
            dq.input[0] = q_name
        drop.append(node)
        uses[node.input[0]] -= 1
        if uses[node.input[0]] == 0:
            model.graph.initializer.remove(inits.pop(node.input[0]))
            saved += w.nbytes - q.nbytes
        folded += 1
    for node in drop:
        model.graph.node.remove(node)
    return {"int8_weights": folded, "bytes_saved": saved}
