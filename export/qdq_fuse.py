"""Put a QAT ONNX graph in the QDQ form onnxruntime fuses into integer kernels (QLinearConv, QGemm, ...).

tf2onnx turns a QAT model into Conv/MatMul + float bias + Relu + QuantizeLinear/DequantizeLinear. Read in
onnxruntime's optimised graph (SessionOptions.optimized_model_filepath), every Conv and the hidden Dense stayed
float (FusedConv, FusedGemm), while QDQ propagation already moved DequantizeLinear across MaxPool and Reshape.

1. A Relu (or ReLU6's Clip) between the layer and its QuantizeLinear. onnxruntime's ReluQuantFusion drops a
   Relu only when the quantiser's zero point is the type's minimum (a range starting at 0). QAT ranges after a
   ReLU often start below 0 (tfmot's moving-average ranges start at -6 and move with decay 0.999 per step), so
   the Relu stays and no DequantizeLinear -> Conv -> QuantizeLinear group forms. Quantisation is monotone, so
   Q(clip(x, a, b)) == clip(Q(x), Q(a), Q(b)): the activation moves after the QuantizeLinear as a Clip of the
   8-bit values (what TFLite's fused ReLU does with the same parameters). Same values, one integer kernel.
2. A float Conv bias. QDQ tools write it as int32 behind a DequantizeLinear with scale = input scale * weight
   scale and zero point 0 (onnxruntime.quantization and TFLite do). onnxruntime 1.32 (used here) converts a
   float bias itself at load (its BiasQuantization pass), so 1. alone makes it fuse; the file does it anyway
   so that older onnxruntime releases and other QDQ consumers see the standard form. The rounding is the
   integer kernel's own.

Nothing here is hand-written where a library has it: onnxruntime.quantization has no pass that takes an
already-quantised (QAT) graph to this form; its quantizers start from float graphs and calibrate again.
"""

from __future__ import annotations

import numpy as np

_PASS_THROUGH = ("Reshape", "MaxPool", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity")
_LAYERS = ("Conv", "MatMul", "Gemm", "Add")  # what may feed a Relu whose output is quantised


class _Graph:
    """Name lookups over an onnx GraphProto: initializers, producers, consumers (rebuilt after each edit)."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.graph = graph
        self.inits = {i.name: i for i in graph.initializer}
        self.array = lambda name: numpy_helper.to_array(self.inits[name]) if name in self.inits else None
        self.refresh()

    def refresh(self) -> None:
        self.producer = {out: n for n in self.graph.node for out in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.outputs = {o.name for o in self.graph.output}


def _quantise_bound(value: float, scale: float, zero: np.ndarray) -> int:
    """QuantizeLinear of one float: round half to even, add the zero point, saturate to the type."""
    info = np.iinfo(zero.dtype)
    return int(np.clip(np.rint(np.float32(value) / np.float32(scale)) + int(zero), info.min, info.max))


def _bounds(g: _Graph, act) -> tuple[float, float] | None:
    """(low, high) of a Relu, or of a Clip with constant bounds (ReLU6); None for anything else."""
    if act.op_type == "Relu":
        return 0.0, np.inf
    lo = g.array(act.input[1]) if len(act.input) > 1 and act.input[1] else np.float32(-np.inf)
    hi = g.array(act.input[2]) if len(act.input) > 2 and act.input[2] else np.float32(np.inf)
    if lo is None or hi is None or lo.size != 1 or hi.size != 1:
        return None
    return float(lo.reshape(())), float(hi.reshape(()))


def fuse_activation_into_quantize(model) -> int:
    """Move each Relu/Clip whose only consumer is a QuantizeLinear to after it, as a Clip of the 8-bit values at
    the quantised bounds (none where the bounds are the type's whole range). Return how many were moved."""
    from onnx import helper, numpy_helper

    g = _Graph(model.graph)
    moved = 0
    for act in [n for n in model.graph.node if n.op_type in ("Relu", "Clip")]:
        after = g.consumers.get(act.output[0], [])
        if act.output[0] in g.outputs or len(after) != 1 or after[0].op_type != "QuantizeLinear":
            continue
        q = after[0]
        scale = g.array(q.input[1])
        zero = g.array(q.input[2]) if len(q.input) > 2 else np.zeros((), np.uint8)
        bounds = _bounds(g, act)
        source = g.producer.get(act.input[0])
        if (bounds is None or scale is None or zero is None or scale.size != 1 or zero.size != 1
                or source is None or source.op_type not in _LAYERS or q.output[0] in g.outputs):
            continue  # per-channel activation ranges or a computed bound: not what tf2onnx writes; leave it
        zero = zero.reshape(())
        info = np.iinfo(zero.dtype)
        lo, hi = (info.min if np.isinf(b) and b < 0 else info.max if np.isinf(b) else
                  _quantise_bound(b, float(scale.reshape(())), zero) for b in bounds)
        q.input[0] = act.input[0]
        model.graph.node.remove(act)
        if lo > info.min or hi < info.max:  # Q(clip(x, a, b)) == clip(Q(x), Q(a), Q(b)): Q is monotone
            clamped = f"{q.output[0]}_clipped"
            for n in g.consumers.get(q.output[0], []):
                n.input[:] = [clamped if name == q.output[0] else name for name in n.input]
            limits = []
            for value in (lo, hi):  # one small initializer per (type, value), shared by every Clip that needs it
                name = f"qclip_{zero.dtype.name}_{value}"
                if name not in g.inits:
                    g.inits[name] = numpy_helper.from_array(np.array(value, zero.dtype), name)
                    model.graph.initializer.append(g.inits[name])
                limits.append(name)
            model.graph.node.insert(list(model.graph.node).index(q) + 1, helper.make_node(
                "Clip", [q.output[0], *limits], [clamped], name=f"qclip_{moved}"))
        moved += 1
        g.refresh()
    return moved


def _activation_scale(g: _Graph, name: str):
    """The per-tensor scale of the DequantizeLinear that `name` comes from, looking through data-movement ops
    (MaxPool, Reshape, ...: they commute with dequantisation); None when there is none."""
    node = g.producer.get(name)
    while node is not None and node.op_type in _PASS_THROUGH:
        node = g.producer.get(node.input[0])
    if node is None or node.op_type != "DequantizeLinear":
        return None
    scale = g.array(node.input[1])
    return None if scale is None or scale.size != 1 else scale.reshape(()).astype(np.float32)


def quantise_conv_bias(model) -> int:
    """Give each Conv with a float bias initializer an int32 bias behind a DequantizeLinear (scale = input scale
    * weight scale per output channel, zero point 0). Return how many biases were converted."""
    from onnx import helper, numpy_helper

    g = _Graph(model.graph)
    done, new_nodes = 0, []
    for conv in model.graph.node:
        if conv.op_type != "Conv" or len(conv.input) < 3 or conv.input[2] not in g.inits:
            continue
        bias = g.array(conv.input[2])
        w_dq = g.producer.get(conv.input[1])
        x_scale = _activation_scale(g, conv.input[0])
        if bias.dtype != np.float32 or w_dq is None or w_dq.op_type != "DequantizeLinear" or x_scale is None:
            continue
        w_scale = g.array(w_dq.input[1])
        if w_scale is None:
            continue
        scale = (x_scale * np.broadcast_to(w_scale, bias.shape)).astype(np.float32)
        q = np.rint(bias.astype(np.float64) / scale)
        if np.abs(q).max(initial=0) >= 2**31 - 1:
            continue
        base = conv.input[2]
        inits = [numpy_helper.from_array(q.astype(np.int32), f"{base}_int32"),
                 numpy_helper.from_array(scale, f"{base}_scale"),
                 numpy_helper.from_array(np.zeros(bias.shape, np.int32), f"{base}_zero")]
        model.graph.initializer.extend(inits)
        dq = helper.make_node("DequantizeLinear", [i.name for i in inits], [f"{base}_dequantized"],
                              name=f"{base}_DequantizeLinear", axis=0)
        conv.input[2] = dq.output[0]
        new_nodes.append((conv, dq))
        if not g.consumers.get(base) or all(n is conv for n in g.consumers[base]):
            model.graph.initializer.remove(g.inits.pop(base))
        done += 1
    for conv, dq in new_nodes:
        model.graph.node.insert(list(model.graph.node).index(conv), dq)
    return done


def fuse_for_integer_kernels(model) -> dict:
    """Both rewrites, in place; return what changed for the manifest's lineage."""
    return {"activations_moved": fuse_activation_into_quantize(model), "int32_biases": quantise_conv_bias(model)}


FLOAT_LAYERS = ("Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm", "ConvTranspose")


def float_layers_after_optimisation(model_bytes: bytes) -> list[str]:
    """The op types of the layers onnxruntime still runs in float after its graph optimisations (extended level:
    QDQ fusion, no hardware-specific layouts). Empty when every Conv/MatMul/Gemm became an integer kernel."""
    import os
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgeport-ort-") as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = os.path.join(tmp, "optimised.onnx")
        opts.log_severity_level = 3
        ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        optimised = onnx.load(opts.optimized_model_filepath)
    return [n.op_type for n in optimised.graph.node if n.op_type in FLOAT_LAYERS]
