"""Per-layer quantisation sensitivity: each Keras layer's output in the quantised file against the float model's.

Both formats are compared with the same reference, the Keras model's own layer outputs on up to 200 validation
images, and named by Keras layer (export/layers.py), so a layer is called the same in the TFLite and the ONNX
table. The quantised side: LiteRT with `experimental_preserve_all_tensors` (every op's output kept, int8 values
dequantised with the tensor's scale and zero point); onnxruntime with each layer's tensor added as a graph
output (after its DequantizeLinear, so the value the next op reads). Hand-written rather than through
`tf.lite.experimental.QuantizationDebugger` / `onnxruntime.quantization.qdq_loss_debug`: both report one
whole-tensor figure, and that is what this module must not rely on.

Per layer: `tensor`, the file's name of the tensor compared, and for ONNX `node`, the name of the node making it
(what a graph viewer finds: Model Explorer node data, runtime/report_quant.py); `sqnr_db`, the median over output
channels of the channel's SQNR (signal power / error power, dB); `worst_channel_sqnr_db`; `tensor_sqnr_db`, the
whole-tensor SQNR; and `rmse_over_scale`, the RMSE in units of the tensor's quantisation step (None for a tensor
kept in float). Why per channel: a channel carrying a huge constant sets a tensor's int8 range, every other channel
rounds to zero, and the whole-tensor SQNR still looks fine because the constant dominates the power; the median
channel sees the other channels crushed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edgeport.export.layers import layer_names, layer_of, layers_in

SENSITIVITY_IMAGES = 200  # validation images compared per file
SQNR_CAP_DB = 120.0  # an exact channel (zero error) is reported as this, JSON having no infinity
MAC_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV", "Conv", "Gemm",
           "MatMul", "ConvTranspose"}


def keras_outputs(model, images: np.ndarray) -> dict[str, np.ndarray]:
    """Each layer's output on `images` (float32 model input), by layer name; {} for a model without layers."""
    import importlib

    names = layer_names(model)
    if not names:
        return {}
    keras = importlib.import_module(type(model).__module__.split(".")[0])  # tf_keras or Keras 3: the model's own
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outs = probe.predict(images, verbose=0, batch_size=64)
    return {n: np.asarray(o, dtype=np.float32) for n, o in zip(names, outs if len(names) > 1 else [outs],
                                                                strict=True)}


def layer_sensitivity(path: str | Path, model, images: np.ndarray, reference: dict | None = None) -> list[dict]:
    """Rows {layer, op, tensor, sqnr_db, worst_channel_sqnr_db, tensor_sqnr_db, rmse_over_scale}, worst (lowest
    sqnr_db) first, earlier layers first among equals (an error spreads downstream). `images` is float32 model
    input; `reference` the Keras layer outputs when already computed (keras_outputs)."""
    images = images[:SENSITIVITY_IMAGES]
    reference = reference if reference is not None else keras_outputs(model, images)
    if not reference:
        return []
    layers = list(reference)
    quant = _tflite_outputs(Path(path), images, layers) if Path(path).suffix == ".tflite" \
        else _onnx_outputs(Path(path), images, layers)
    rows = []
    for order, name in enumerate(layers):
        if name not in quant:
            continue
        op, values, scale, tensor, node = quant[name]
        ref = reference[name][: len(values)]
        values = _match_layout(values, ref)
        if values is None:
            continue
        rows.append({"layer": name, "op": op, "tensor": tensor, **({"node": node} if node else {}), "order": order,
                     **channel_stats(ref, values, scale)})
    rows.sort(key=lambda r: (r["sqnr_db"] if r["sqnr_db"] is not None else SQNR_CAP_DB, r["order"]))
    for r in rows:
        del r["order"]
    return rows


def channel_stats(ref: np.ndarray, quant: np.ndarray, scale: float | None) -> dict:
    """SQNR per output channel (last axis), its median and worst, the whole-tensor SQNR and rmse/step."""
    err = (quant - ref).astype(np.float64)
    axes = tuple(range(ref.ndim - 1))
    signal = (ref.astype(np.float64) ** 2).sum(axis=axes)
    noise = (err ** 2).sum(axis=axes)
    live = signal > 0  # a channel that is always zero in float has no SQNR
    per = np.full(signal.shape, SQNR_CAP_DB)
    hurt = live & (noise > 0)
    per[hurt] = np.minimum(SQNR_CAP_DB, 10 * np.log10(signal[hurt] / noise[hurt]))
    per = per[live]
    rmse = float(np.sqrt((err ** 2).mean()))
    return {
        "sqnr_db": round(float(np.median(per)), 2) if per.size else None,
        "worst_channel_sqnr_db": round(float(per.min()), 2) if per.size else None,
        "tensor_sqnr_db": round(float(_db(signal.sum(), noise.sum())), 2),
        "rmse_over_scale": round(rmse / scale, 3) if scale else None,
    }


def _db(signal: float, noise: float) -> float:
    return SQNR_CAP_DB if noise == 0 else (min(SQNR_CAP_DB, 10 * np.log10(signal / noise)) if signal > 0 else 0.0)


def _match_layout(values: np.ndarray, ref: np.ndarray) -> np.ndarray | None:
    """`values` in the Keras layout (NHWC) of `ref`: as is, NCHW transposed (tf2onnx works in NCHW), else None.

    A tensor whose height, width and channels are equal (32x32x32) fits both layouts, and its shape cannot say
    which it is in: then the layout closer to the float values wins. The right one differs from them by the
    quantisation error; the wrong one by a permutation of the whole signal (about 0 dB, as measured on a
    MobileNetV2 stem where the right layout gave 40 dB)."""
    shape = ref.shape
    candidates = [values] if values.shape == shape else []
    if values.ndim == 4 and values.transpose(0, 2, 3, 1).shape == shape:
        candidates.append(values.transpose(0, 2, 3, 1))
    if len(candidates) < 2:
        return candidates[0] if candidates else None  # same size in another layout: not comparable by channel
    return min(candidates, key=lambda c: float(np.mean((c.astype(np.float64) - ref) ** 2)))


def _tflite_outputs(path: Path, images: np.ndarray, layers: list[str]) -> dict:
    """layer -> (op, dequantised output of the layer's last op, step or None for a float tensor, tensor name,
    None: Model Explorer finds a TFLite op by its output tensor's name)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # without XNNPACK: a delegate replaces the ops it takes by one node and keeps only their last output
    interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    details = {t["index"]: t for t in interp.get_tensor_details()}
    outputs = {int(o["index"]) for o in interp.get_output_details()}
    ops = interp._get_ops_details()  # no public API lists ops with their tensors
    readers: dict[int, list[dict]] = {}
    for op in ops:
        for i in map(int, op["inputs"]):
            readers.setdefault(i, []).append(op)
    label: dict[str, str] = {}  # layer -> the op it is named by: its MAC op, else its first
    tensor: dict[str, int] = {}  # layer -> index of its last op's output
    for op in ops:
        for i in map(int, op["outputs"]):
            layer = layer_of(details[i]["name"], layers)
            if layer is None and i in outputs:  # the converter names the model's output by its signature
                layer = layers[-1]
            if layer is None:
                continue
            if op["op_name"] in MAC_OPS or layer not in label:
                label[layer] = op["op_name"]
            after = [layers_in(details[int(o)]["name"], layers) for r in readers.get(i, []) for o in r["outputs"]]
            if not (after and all(layer in names for names in after)):  # else a step inside the layer (a
                tensor[layer] = i  # separable conv's depthwise op), not the layer's output
    chosen = {layer: (label[layer], i) for layer, i in tensor.items()}
    inp = interp.get_input_details()[0]
    batch = len(images) if inp["shape_signature"][0] == -1 else int(inp["shape"][0])  # batch-1 files: one by one
    if batch != inp["shape"][0]:
        interp.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]])
    interp.allocate_tensors()
    scale, zero = inp["quantization"]
    x = images if inp["dtype"] == np.float32 else np.clip(np.round(images / scale + zero), -128, 127).astype(
        inp["dtype"])
    parts: dict[str, list[np.ndarray]] = {layer: [] for layer in chosen}
    for start in range(0, len(x) - batch + 1, batch):
        interp.set_tensor(inp["index"], x[start:start + batch])
        interp.invoke()
        for layer, (_, i) in chosen.items():
            parts[layer].append(interp.get_tensor(i).copy())
    found = {}
    for layer, (op, i) in chosen.items():
        values, t = np.concatenate(parts[layer]), details[i]
        step, zp = t["quantization"]
        quantised = t["dtype"] != np.float32
        found[layer] = (op, (values.astype(np.float32) - zp) * step if quantised else values, step if quantised
                        else None, t["name"], None)
    return found


def _onnx_outputs(path: Path, images: np.ndarray, layers: list[str]) -> dict:
    """layer -> (op, output of the layer's last node, after its DequantizeLinear where it has one, step or None,
    the node's own output name, the node's name as Model Explorer's ONNX adapter gives it: its id there, by which
    node data finds it (the adapter does not look nodes up by output tensor name; an unnamed node is `<node_i>`,
    i its index in the graph, as model-explorer-onnx names it))."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    produced = {o: n for n in proto.graph.node for o in n.output}
    inits = {t.name: t for t in proto.graph.initializer}
    quantised: dict[str, tuple[str, float]] = {}  # float tensor -> (its dequantised twin, step)
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear":
            deq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == node.output[0]]
            step = inits.get(node.input[1])
            if deq and step is not None:
                quantised[node.input[0]] = (deq[0].output[0], float(onnx.numpy_helper.to_array(step).ravel()[0]))
    readers: dict[str, list] = {}
    for node in proto.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def next_ops(tensor: str) -> list:
        """The nodes that read `tensor`, looking through Quantize/DequantizeLinear pairs."""
        found = []
        for node in readers.get(tensor, []):
            qdq = node.op_type in ("QuantizeLinear", "DequantizeLinear")
            found += next_ops(node.output[0]) if qdq else [node]
        return found

    chosen: dict[str, tuple] = {}  # layer -> (op, tensor read, step, node output, node id)
    for index, node in enumerate(proto.graph.node):
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        tensor = node.output[0]
        layer = layer_of(tensor, layers) or layer_of(node.name, layers)  # a fused node's output names the last layer
        after = next_ops(tensor)
        if layer is None or (after and all(layer in layers_in(n.name, layers) for n in after)):
            continue  # a step inside the layer (batch norm as Mul then Add): not the layer's output
        twin, step = quantised.get(tensor, (tensor, None))
        deq = [n for n in readers.get(tensor, []) if n.op_type == "DequantizeLinear" and n.input[1] in inits]
        if twin == tensor and deq:  # an op on int8 values (a ReLU moved after QuantizeLinear as Clip): dequantised
            twin, step = deq[0].output[0], float(onnx.numpy_helper.to_array(inits[deq[0].input[1]]).ravel()[0])
        chosen[layer] = (_onnx_op(proto, layer, layers), twin, step, tensor, node.name or f"<node_{index}>")
    existing = {o.name for o in proto.graph.output}
    for _, tensor, *_ in chosen.values():
        if tensor not in existing and tensor in produced:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph's own tensors, unfused
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: images.astype(np.float32)}
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(names, feed), strict=True))
    return {layer: (op, values[t], step, own, node) for layer, (op, t, step, own, node) in chosen.items()
            if t in values}


# every quantised file: full-integer int8, int16 activations, and the float-activation ones (float16 or int8
# weights), whose layer outputs are float but carry the weights' rounding
SENSITIVE_PRECISIONS = ("int8", "int16x8", "int8-weights", "float16")


def file_sensitivity(path: Path, target, model, ctx) -> list[dict] | None:
    """The sensitivity rows of one exported quantised file on the run's validation images (else None: float32,
    a QAT-free format without layer outputs, a model without Keras layers)."""
    if target.precision not in SENSITIVE_PRECISIONS or target.format not in ("tflite", "onnx"):
        return None
    if not layer_names(model):
        return None
    from edgeport.export.budget import budget_split

    images = ctx.spec.normalise(budget_split(ctx)[0][:SENSITIVITY_IMAGES])
    if not len(images):
        return None
    key = ("keras_outputs", id(model))
    try:
        if key not in ctx.cache:
            ctx.cache[key] = keras_outputs(model, images)
        rows = layer_sensitivity(path, model, images, ctx.cache[key])
    except Exception as exc:  # a diagnostic: a graph this module does not understand must not fail the export
        print(f"edgeport: note: {target.name}: per-layer sensitivity skipped ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:160] if str(exc) else ''})", file=sys.stderr)
        return None
    wrapped = _wrapped_names(model)
    return [{**r, "layer": wrapped.get(r["layer"], r["layer"])} for r in rows]


def _wrapped_names(model) -> dict[str, str]:
    """A QAT model's layer names -> the user's: tfmot wraps each layer as `quant_<name>` (QuantizeWrapper, the
    wrapped layer in `.layer`), and the table names layers as the user's model does."""
    return {layer.name: layer.layer.name for layer in getattr(model, "layers", [])
            if hasattr(layer, "layer") and hasattr(layer.layer, "name")}


def _onnx_op(proto, layer: str, layers: list[str]) -> str:
    """The op a layer is named by: its multiply-accumulate node if it has one, else its first node that is not one
    of tf2onnx's layout helpers (named "...__N")."""
    nodes = [n for n in proto.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    ops = [n.op_type for n in nodes if layer in layers_in(n.name, layers)
           or any(layer in layers_in(o, layers) for o in n.output)]
    plain = [n.op_type for n in nodes if layer in layers_in(n.name, layers) and "__" not in n.name]
    return next((op for op in ops if op in MAC_OPS), (plain or ops or ["?"])[0])
