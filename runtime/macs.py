"""Multiply-accumulates per inference, counted from the model graph itself (not from the Keras model).

Only the ops that do multiply-accumulates are counted (convolutions, fully connected, matrix products);
pooling, activations and element-wise ops are listed as uncounted. Counts are dense: a pruned weight that
is zero still counts, because the CPU kernels still multiply it.

TFLite: the flatbuffer is read with the schema module that ships inside ai-edge-litert (no interpreter).
ONNX: onnxruntime does not expose the graph, so this needs the `onnx` package (the [train] or [report]
extra); without it the count is None with the reason, and everything else still works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.core.errors import MissingDependencyError, require


@dataclass(frozen=True)
class MacCount:
    """MACs for one image (batch 1), or None with `note` saying why they could not be counted."""

    macs: int | None  # multiply-accumulates per image; None when the graph could not be read
    by_op: dict[str, int] = field(default_factory=dict)  # op type -> MACs per image
    uncounted_ops: list[str] = field(default_factory=list)  # op types with MACs not modelled here
    source: str = ""  # how the count was made, e.g. "tflite flatbuffer"
    note: str | None = None  # why `macs` is None, or a caveat
    int8_macs: int | None = None  # of `macs`, those done by ops with int8 weights (mixed-precision files)

    def to_dict(self) -> dict:
        return {"macs": self.macs, "by_op": self.by_op, "uncounted_ops": self.uncounted_ops,
                "source": self.source, "note": self.note, "int8_macs": self.int8_macs}


def count_macs(path: str | Path) -> MacCount:
    """MACs per image for a .tflite or .onnx file. Never raises for an unreadable graph: the count is None."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".tflite":
            return _tflite_macs(p)
        if suffix == ".onnx":
            return _onnx_macs(p)
    except MissingDependencyError as exc:
        return MacCount(None, source=suffix[1:], note=str(exc))
    except Exception as exc:  # a foreign graph this counter does not understand: say so, do not fail the bench
        return MacCount(None, source=suffix[1:], note=f"graph not understood ({type(exc).__name__}: {exc})"[:200])
    return MacCount(None, note=f"no MAC counter for {suffix or 'files without a suffix'}")


def _prod(shape) -> int:
    return int(np.prod([max(int(d), 1) for d in shape])) if len(shape) else 1


# --- TFLite -----------------------------------------------------------------------------------------------
# op -> MACs from (input shapes, output shapes); filters are OHWI for CONV_2D, 1HWC for depthwise.
_TFLITE_MACS = {
    "CONV_2D": lambda ins, outs: _prod(outs[0]) * _prod(ins[1][1:]),
    "DEPTHWISE_CONV_2D": lambda ins, outs: _prod(outs[0]) * _prod(ins[1][1:3]),
    "CONV_3D": lambda ins, outs: _prod(outs[0]) * _prod(ins[1][:4]),
    "FULLY_CONNECTED": lambda ins, outs: _prod(outs[0]) * int(ins[1][-1]),
    "BATCH_MATMUL": lambda ins, outs: _prod(outs[0]) * int(ins[0][-1]),
    "TRANSPOSE_CONV": lambda ins, outs: _prod(ins[2]) * _prod(ins[1][:3]),
}


def _tflite_macs(path: Path) -> MacCount:
    schema = require("ai_edge_litert.schema_py_generated", "runtime")
    buf = path.read_bytes()
    model = schema.Model.GetRootAsModel(buf, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.Subgraphs(0)

    def shape(i: int) -> list[int]:
        if i < 0 or not graph.Tensors(i).ShapeLength():
            return []
        return [int(d) for d in graph.Tensors(i).ShapeAsNumpy()]

    batch = max(shape(int(graph.InputsAsNumpy()[0]))[:1] or [1])
    by_op: dict[str, int] = {}
    uncounted: set[str] = set()
    int8 = 0
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        fn = _TFLITE_MACS.get(name)
        if fn is None:
            uncounted.add(name)
            continue
        ins = [shape(int(i)) for i in op.InputsAsNumpy()]
        outs = [shape(int(i)) for i in op.OutputsAsNumpy()]
        macs = fn(ins, outs) // max(batch, 1)
        by_op[name] = by_op.get(name, 0) + macs
        weight = int(op.InputsAsNumpy()[1]) if op.InputsLength() > 1 else -1
        if weight >= 0 and graph.Tensors(weight).Type() == schema.TensorType.INT8:
            int8 += macs
    note = "graph has more than one subgraph; only the main one is counted" if model.SubgraphsLength() > 1 else None
    return MacCount(sum(by_op.values()), by_op, sorted(uncounted), "tflite flatbuffer", note, int8)


# --- ONNX -------------------------------------------------------------------------------------------------
def _onnx_macs(path: Path) -> MacCount:
    onnx = require("onnx", "report")
    model = onnx.load(str(path))
    for inp in model.graph.input:  # fix dynamic batch to 1 so shape inference gives concrete shapes
        dims = inp.type.tensor_type.shape.dim
        if len(dims) and not dims[0].dim_value:
            dims[0].dim_value = 1
    model = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {t.name: list(t.dims) for t in model.graph.initializer}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes.setdefault(vi.name, [d.dim_value if d.dim_value else -1 for d in dims])
    weights = {t.name for t in model.graph.initializer}
    first_input = next((i.name for i in model.graph.input if i.name not in weights), None)
    batch = max(1, (shapes.get(first_input) or [1])[0])

    def known(name: str) -> list[int] | None:
        s = shapes.get(name)
        return s if s and all(d > 0 for d in s) else None

    by_op: dict[str, int] = {}
    uncounted: set[str] = set()
    missing = int8 = 0
    dequantised = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    for node in model.graph.node:
        op = node.op_type
        # (activation, weight) input positions: float ops, QDQ ops, and the integer/QLinear variants
        pos = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3), "ConvTranspose": (0, 1),
               "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "Gemm": (0, 1)}.get(op)
        if pos is None:
            uncounted.add(op)
            continue
        a, w, out = known(node.input[pos[0]]), known(node.input[pos[1]]), known(node.output[0])
        if a is None or w is None or out is None:
            missing += 1
            continue
        if op == "ConvTranspose":
            macs = _prod(a) * _prod(w[1:])
        elif op in ("Conv", "ConvInteger", "QLinearConv"):
            macs = _prod(out) * _prod(w[1:])
        elif op == "Gemm":
            trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
            macs = _prod(out) * (a[0] if trans_a else a[-1])
        else:
            macs = _prod(out) * a[-1]
        by_op[op] = by_op.get(op, 0) + macs // batch
        if "Integer" in op or op.startswith("QLinear") or (node.input[pos[0]] in dequantised
                                                            and node.input[pos[1]] in dequantised):
            int8 += macs // batch  # integer ops, or QDQ: int8 activation and weight
    note = f"{missing} MAC op(s) had unknown shapes and were not counted" if missing else None
    return MacCount(sum(by_op.values()), by_op, sorted(uncounted), "onnx graph (shape inference)", note, int8)
