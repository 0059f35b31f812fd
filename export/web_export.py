"""TFLite files the browser can run: batch 1, float32 input and output (`edgeport serve` runs them in the page).

LiteRT.js (`@litertjs/core` 2.5) refuses what the default TFLite targets contain: a dynamic batch
dimension (`[-1, 28, 28, 1]`) and int8 input tensors ("Element type INT8 is not supported"). These
targets trace the model with a fixed `[1, H, W, C]` float32 signature; the int8 one quantises the
inside (weights and activations, calibrated like `tflite_int8`) and keeps float I/O, so the converter
adds the quantise/dequantise ops at the edges. ONNX needs no twin: onnxruntime-web runs `onnx_fp32`.
"""

from __future__ import annotations

from pathlib import Path

from edgeport.export.targets import register

BROWSER_BATCH = 1  # LiteRT.js compiles a static shape; a dynamic batch dimension is refused


def _batch1_converter(model, ctx):
    """A TFLite converter over the model traced at batch 1 with a float32 input."""
    tf = ctx.tf
    spec = tf.TensorSpec((BROWSER_BATCH, *model.input_shape[1:]), tf.float32, name="image")
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
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
    tf = ctx.tf
    conv = _batch1_converter(model, ctx)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    calib = ctx.calibration_images()

    def representative():
        for i in range(len(calib)):
            yield [calib[i : i + 1]]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # inference_input_type / inference_output_type stay float32: quantise and dequantise happen in the file.
    path.write_bytes(conv.convert())
    return {"converter": "tf.lite.TFLiteConverter.from_concrete_functions", "optimizations": ["DEFAULT"],
            "supported_ops": "TFLITE_BUILTINS_INT8", "io": "float32", "batch": BROWSER_BATCH,
            "calibration": ctx.calibration_info()}
