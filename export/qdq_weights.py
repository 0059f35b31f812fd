"""Store a QDQ ONNX graph's weights as int8: QuantizeLinear(float initializer) becomes an int8 initializer.

tf2onnx writes a QAT model's weights as float32: either initializers followed by QuantizeLinear ->
DequantizeLinear, or (constant-folded) initializers whose values already lie on the int8 grid.
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
    grid_folded, grid_saved = _fold_grid_weights(model)
    return {"int8_weights": folded + grid_folded, "bytes_saved": saved + grid_saved}


_WEIGHT_AXIS = {"Conv": 0, "MatMul": 1}  # the weight input's output-channel axis (Conv: OIHW, MatMul: K x N)


def _on_grid(w: np.ndarray, axis: int):
    """(int8 values, scale, axis or None) when `w` is k * scale with integer |k| <= 127, per output channel (TF's
    per-channel conv kernels) or per tensor (its Dense kernels); None otherwise."""
    other = tuple(i for i in range(w.ndim) if i != axis)
    for per_axis in (True, False):
        scale = (np.abs(w).max(axis=other if per_axis else None) / 127).astype(np.float32)
        if not (scale > 0).all():
            continue
        shape = [1] * w.ndim
        if per_axis:
            shape[axis] = scale.size
        k = w / scale.reshape(shape)
        q = np.rint(k)
        if np.abs(k - q).max() <= 1e-3 and np.abs(q).max() <= 127:
            return q.astype(np.int8), scale, axis if per_axis else None
    return None


def _fold_grid_weights(model) -> tuple[int, int]:
    """tf2onnx constant-folds a QAT weight's Q/DQ pair into a float initializer whose values lie on the int8 grid
    (symmetric, narrow range: k * scale, |k| <= 127, the largest |k| = 127 in each output channel). Store each such
    weight as int8 + DequantizeLinear(scale per output channel); weights off the grid stay float."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    folded, saved, new_nodes = 0, 0, []
    for node in model.graph.node:
        axis = _WEIGHT_AXIS.get(node.op_type)
        if axis is None or len(node.input) < 2 or node.input[1] not in inits or uses[node.input[1]] != 1:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if w.dtype != np.float32 or w.ndim < 2 or w.size < 16:
            continue
        found = _on_grid(w, axis)
        if found is None:
            continue  # not fake-quantised values: leave it float
        q, scale, axis = found
        name = node.input[1]
        q_init = numpy_helper.from_array(q, f"{name}_int8")
        s_init = numpy_helper.from_array(scale, f"{name}_scale")
        z_init = numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}_zero")
        model.graph.initializer.remove(inits[name])
        model.graph.initializer.extend([q_init, s_init, z_init])
        dq_out = f"{name}_dequantized"
        new_nodes.append((node, helper.make_node("DequantizeLinear", [q_init.name, s_init.name, z_init.name],
                                                 [dq_out], name=f"{name}_DequantizeLinear",
                                                 **({} if axis is None else {"axis": axis}))))
        node.input[1] = dq_out
        folded += 1
        saved += w.nbytes - q.size - scale.nbytes - scale.size
    for node, dq in new_nodes:
        nodes = list(model.graph.node)
        model.graph.node.insert(nodes.index(node), dq)
    return folded, saved
