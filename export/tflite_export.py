"""TFLite converters: float32 and full-integer int8. Builtin ops only, so LiteRT and TFLM can run them."""

from __future__ import annotations

from pathlib import Path

from edgeport.export.targets import register


def _converter(model, ctx):
    tf = ctx.tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops: must run anywhere
    return conv


@register("tflite_fp32", format="tflite", precision="float32", suffix=".tflite",
          description="TFLite float32, builtin ops", atol=1e-4)
def export_tflite_fp32(model, path: Path, ctx) -> dict:
    path.write_bytes(_converter(model, ctx).convert())
    return {"converter": "tf.lite.TFLiteConverter.from_keras_model", "optimizations": []}


@register("tflite_int8", format="tflite", precision="int8", suffix=".tflite",
          description="TFLite full-integer int8 (int8 input/output), calibrated on training images",
          atol=None, min_agreement=0.95)
def export_tflite_int8(model, path: Path, ctx) -> dict:
    tf = ctx.tf
    conv = _converter(model, ctx)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    calib = ctx.calibration_images()

    def representative():
        for i in range(len(calib)):
            yield [calib[i : i + 1]]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return {"converter": "tf.lite.TFLiteConverter.from_keras_model", "optimizations": ["DEFAULT"],
            "supported_ops": "TFLITE_BUILTINS_INT8", "io": "int8", "calibration": ctx.calibration_info()}
