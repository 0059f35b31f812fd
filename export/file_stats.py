"""Measure what a written file really holds: per weight tensor, its sparsity and distinct values.

A pruned Keras model can lose its zeros on the way to a file (a converter that folds, re-quantises or
densifies); the only proof is to read the weights back from the file. TFLite is read with the flatbuffer
schema shipped in ai-edge-litert (no TensorFlow); ONNX with the onnx package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.core.errors import ModelFileError

_TFLITE_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 9: np.int8, 7: np.int16, 3: np.uint8}


def _summary(tensors: dict[str, np.ndarray]) -> dict:
    per, zeros, total = {}, 0, 0
    for name, w in tensors.items():
        nz = int(w.size - np.count_nonzero(w))
        per[name] = {"shape": list(w.shape), "dtype": str(w.dtype), "weights": int(w.size),
                     "sparsity": round(nz / w.size, 4), "unique": int(len(np.unique(w)))}
        zeros, total = zeros + nz, total + w.size
    return {"weight_tensors": per, "overall_sparsity": round(zeros / total, 4) if total else 0.0,
            "weights": int(total)}


def tflite_weight_stats(path: str | Path) -> dict:
    """Sparsity and distinct values of every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED filter in a .tflite,
    as stored (int8 for quantised files; a float16 filter behind a DEQUANTIZE op is followed to its constant)."""
    from ai_edge_litert import schema_py_generated as schema

    p = Path(path)
    try:
        model = schema.ModelT.InitFromPackedBuf(p.read_bytes(), 0)
    except Exception as exc:  # the flatbuffer reader raises struct/index errors on a damaged file
        raise ModelFileError(f"{p}: not a readable TFLite flatbuffer ({exc})") from None
    ops = schema.BuiltinOperator
    wanted = (ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED)

    def code(op):
        oc = model.operatorCodes[op.opcodeIndex]
        return max(oc.builtinCode, oc.deprecatedBuiltinCode)  # the schema keeps codes < 127 in the old field too

    graph = model.subgraphs[0]
    producer = {out: op for op in graph.operators for out in (op.outputs if op.outputs is not None else [])}
    tensors = {}
    for op in graph.operators:
        if code(op) not in wanted or op.inputs is None or len(op.inputs) < 2:
            continue
        idx = int(op.inputs[1])
        src = producer.get(idx)
        if src is not None and code(src) == ops.DEQUANTIZE:  # float16 weights: the constant feeds a DEQUANTIZE
            idx = int(src.inputs[0])
        t = graph.tensors[idx]
        data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        if data is None or t.type not in _TFLITE_DTYPES:
            continue  # weights computed at run time or stored out of line: not measurable here
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors[name] = np.frombuffer(bytes(bytearray(data)), dtype=_TFLITE_DTYPES[t.type]).reshape(t.shape)
    return _summary(tensors)


def onnx_weight_stats(path: str | Path) -> dict:
    """The same for an .onnx file: the weight initializers of Conv / Gemm / MatMul nodes, read through any
    DequantizeLinear (QDQ files store int8 weights there)."""
    import onnx
    from onnx import numpy_helper

    p = Path(path)
    try:
        graph = onnx.load(str(p)).graph
    except Exception as exc:
        raise ModelFileError(f"{p}: not a readable ONNX model ({exc})") from None
    inits = {i.name: i for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    tensors = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        name = node.input[1]
        src = producer.get(name)
        while src is not None and src.op_type in ("DequantizeLinear", "Transpose", "Reshape", "Identity"):
            name = src.input[0]
            src = producer.get(name)
        if name in inits:
            tensors[name] = numpy_helper.to_array(inits[name])
    return _summary(tensors)


def weight_stats(path: str | Path) -> dict | None:
    """Dispatch on the suffix; None for formats without a reader here."""
    suffix = Path(path).suffix
    if suffix == ".tflite":
        return tflite_weight_stats(path)
    if suffix == ".onnx":
        return onnx_weight_stats(path)
    return None
