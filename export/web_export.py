"""TFLite files the browser can run: batch 1, float32 input and output (`edgeport serve` runs them in the page).

LiteRT.js (`@litertjs/core` 2.5) refuses what the default TFLite targets contain: a dynamic batch
dimension (`[-1, H, W, C]`) and int8 input tensors ("Element type INT8 is not supported"). These
targets trace the model with a fixed `[1, H, W, C]` float32 signature; the int8 one quantises the
inside (weights and activations, calibrated like `tflite_int8`) and keeps float I/O, so the converter
adds the quantise/dequantise ops at the edges. ONNX needs no twin: onnxruntime-web runs `onnx_fp32`.
"""

from __future__ import annotations

from pathlib import Path

from edgeport.export.targets import register
from edgeport.export.tflite_export import full_int8

BROWSER_BATCH = 1  # LiteRT.js compiles a static shape; a dynamic batch dimension is refused


def _batch1_converter(model, ctx):
    """A TFLite converter over the model traced at batch 1 with a float32 input."""
    tf = ctx.tf
    spec = tf.TensorSpec((BROWSER_BATCH, *model.input_shape[1:]), tf.float32, name="image")
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], getattr(model, "trackable", model))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops: must run anywhere
    return conv


@register("web_tflite_fp32", format="tflite", precision="float32", suffix=".tflite",
          description="TFLite float32 for the browser (LiteRT.js): batch 1, float I/O", atol=1e-4)
def export_web_tflite_fp32(model, path: Path, ctx) -> dict:
    path.write_bytes(_batch1_converter(model, ctx).convert())
    return {"converter": "tf.lite.TFLiteConverter.from_concrete_functions", "optimizations": [],
            "batch": BROWSER_BATCH, "io": "float32"}


@register("web_tflite_int8", format="tflite", precision="int8", suffix=".tflite",
          description="TFLite int8 inside, float32 I/O, batch 1, for the browser (LiteRT.js)",
          atol=None, min_agreement=0.95)
def export_web_tflite_int8(model, path: Path, ctx) -> dict:
    # float32 I/O: LiteRT.js refuses int8 input tensors; quantise and dequantise happen inside the file.
    return {**full_int8(_batch1_converter(model, ctx), model, path, ctx, int8_io=False, graph="batch1"),
            "batch": BROWSER_BATCH}
