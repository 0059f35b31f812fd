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


def tflite_selective(conv, model, path: Path, ctx, int8_io: bool, keep: tuple[str, ...]) -> dict:
    """Write an int8 .tflite with the ops of the layers in `keep` left in float; return the conversion settings."""
    from tensorflow.lite.python import convert

    from edgeport.export.tflite_export import TFLITE_CALIBRATION

    tf = ctx.tf
    key = ("tflite_calibrated", id(model))
    if key not in ctx.cache:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(ctx)
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

    nodes = onnx_nodes(onnx.load(str(pre_path)), layer_names(model))
    missing = [layer for layer in keep if layer not in nodes]
    if missing:
        raise ExportError(f"keep_float: the ONNX graph has no node for layer(s) {', '.join(missing)}")
    return [n for layer in keep for n in nodes[layer]]


def _representative(ctx):
    calib = ctx.calibration_images()

    def gen():
        for i in range(len(calib)):
            yield [calib[i : i + 1]]

    return gen
