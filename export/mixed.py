"""Mixed precision: int8 files with some Keras layers kept in float, the same layers named in both formats.

TFLite: the converter calibrates once (`_experimental_calibrate_only`, what tf.lite.experimental.
QuantizationDebugger does), then `mlir_quantize` quantises the calibrated model with the kept layers' ops on its
denylist (`denylisted_nodes`: their output tensor names), int8 or float I/O as the target asks. The calibrated
model is cached per context, so each new set of kept layers costs a quantisation, not a calibration. Float ops
must be allowed, so the file's supported ops are TFLITE_BUILTINS + TFLITE_BUILTINS_INT8.
ONNX: onnxruntime's `quantize_static(nodes_to_exclude=...)` with the kept layers' node names.
"""

from __future__ import annotations

from pathlib import Path

from edgeport.core.errors import ExportError
from edgeport.export.layers import layer_names, onnx_nodes, tflite_nodes


def tflite_selective(conv, model, path: Path, ctx, int8_io: bool, keep: tuple[str, ...], graph: str = "model") -> dict:
    """Write an int8 .tflite with the ops of the layers in `keep` left in float; return the conversion settings.
    `graph`: what `conv` traces (full_int8's), so the browser's batch-1 file is not quantised from another shape."""
    from tensorflow.lite.python import convert

    from edgeport.export.tflite_export import TFLITE_CALIBRATION, representative

    tf = ctx.tf
    key = ("tflite_calibrated", id(model), graph)
    if key not in ctx.cache:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative(ctx)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv._experimental_calibrate_only = True  # the debugger's own route to a calibrated, unquantised model
        ctx.cache[key] = conv.convert()
    calibrated = ctx.cache[key]
    nodes = tflite_nodes(calibrated, layer_names(model))
    denied = [n for layer in keep for n in nodes.get(layer, [])]
    missing = [layer for layer in keep if layer not in nodes]
    if missing:
        raise ExportError(f"keep_float: the TFLite graph has no op for layer(s) {', '.join(missing)} (folded into "
                          "another op by the converter); keep the layer they were folded into")
    io = tf.int8 if int8_io else tf.float32
    path.write_bytes(convert.mlir_quantize(calibrated, input_data_type=io, output_data_type=io,
                                           denylisted_nodes=denied))
    return {"converter": "TFLiteConverter (calibrate only) + mlir_quantize", "optimizations": ["DEFAULT"],
            "supported_ops": "TFLITE_BUILTINS,TFLITE_BUILTINS_INT8", "io": "int8" if int8_io else "float32",
            "ranges": "calibration", "calibration": ctx.calibration_info(TFLITE_CALIBRATION),
            "denylisted_nodes": len(denied)}


def onnx_excluded(pre_path: Path, model, keep: tuple[str, ...]) -> list[str]:
    """The node names of the pre-processed ONNX graph at `pre_path` that make the layers in `keep`."""
    import onnx

    proto = onnx.load(str(pre_path))
    nodes = onnx_nodes(proto, layer_names(model))
    missing = [layer for layer in keep if layer not in nodes]
    if missing:
        raise ExportError(f"keep_float: the ONNX graph has no node for layer(s) {', '.join(missing)}")
    return _with_fused_producers(proto, [n for layer in keep for n in nodes[layer]])


ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh")  # fused into their input op
FUSES_ACTIVATION = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "BatchNormalization")  # ... by TFLite


def _with_fused_producers(proto, excluded: list[str]) -> list[str]:
    """`excluded` plus, for each activation node in it, the op computing its input when only it reads that op.

    The TFLite converter fuses a conv (+ batch norm) + ReLU into one op named by every layer, so keeping the ReLU
    layer (`re_lu`, the name the sensitivity table gives the fused op) in float keeps the conv in float; tf2onnx
    leaves Conv and Relu/Clip as two nodes, and excluding the Relu alone would keep the conv int8 (a 32-channel
    MobileNetV2 stem: 92% of MACs int8 in TFLite, 100% in ONNX). Keeping the producer too makes a kept layer mean
    the same in both formats."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    readers: dict[str, int] = {}
    for node in proto.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    out, by_name = list(excluded), {n.name: n for n in proto.graph.node}
    for name in excluded:
        node = by_name.get(name)
        if node is None or node.op_type not in ACTIVATIONS or not node.input:
            continue
        src = producer.get(node.input[0])
        while src is not None and src.op_type in FUSES_ACTIVATION and readers.get(src.output[0]) == 1:
            if src.name not in out:
                out.append(src.name)
            if src.op_type != "BatchNormalization" or not src.input:  # a batch norm left unfolded: its conv too
                break
            src = producer.get(src.input[0])
    return out
