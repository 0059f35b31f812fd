"""TFLite converters: float32 and full-integer int8. Builtin ops only, so LiteRT and TFLM can run them."""

from __future__ import annotations

from pathlib import Path

from edgeport.export.targets import register

# What TFLite's calibrator does with the representative images (tflite/tools/optimize/calibration: MinMax::Update):
# the absolute min and max of each tensor over all of them. The converter offers no other method, so
# --calibration-method (onnx_static_int8's) does not apply to TFLite files, and their lineage says this instead.
TFLITE_CALIBRATION = "tflite_absolute_min_max"


def _converter(model, ctx):
    """A TFLite converter over `model`: a Keras model (tf-keras or Keras 3), or a SavedModel's serving signature."""
    tf = ctx.tf
    if getattr(model, "saved_model_dir", None) is not None:  # train.bring.ServingModel
        conv = tf.lite.TFLiteConverter.from_saved_model(str(model.saved_model_dir),
                                                        signature_keys=[model.signature_key])
    else:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops: must run anywhere
    return conv


def _converter_name(model) -> str:
    saved = getattr(model, "saved_model_dir", None) is not None
    return f"tf.lite.TFLiteConverter.{'from_saved_model' if saved else 'from_keras_model'}"


@register("tflite_fp32", format="tflite", precision="float32", suffix=".tflite",
          description="TFLite float32, builtin ops", atol=1e-4)
def export_tflite_fp32(model, path: Path, ctx) -> dict:
    path.write_bytes(_converter(model, ctx).convert())
    return {"converter": _converter_name(model), "optimizations": []}


@register("tflite_int8", format="tflite", precision="int8", suffix=".tflite",
          description="TFLite full-integer int8, int8 I/O, calibrated on training images",
          atol=None, min_agreement=0.95, calibrated=True)
def export_tflite_int8(model, path: Path, ctx) -> dict:
    return full_int8(_converter(model, ctx), model, path, ctx, int8_io=True)


def full_int8(conv, model, path: Path, ctx, int8_io: bool, graph: str = "model") -> dict:
    """Full-integer conversion with `conv` (any TFLiteConverter over `model`); int8 or float32 I/O at the edges.
    `graph` names what `conv` traces ("model"; "batch1" for the browser's fixed shape): files of one graph share
    a calibration when layers are kept in float.

    The one place full-int8 settings live: tflite_int8, tflite_int8_float_io and web_tflite_int8 all call it."""
    tf = ctx.tf
    qat = is_qat(model)
    if ctx.keep_float and not qat:  # some layers stay float (export/mixed.py)
        from edgeport.export.mixed import tflite_selective

        return tflite_selective(conv, model, path, ctx, int8_io, ctx.keep_float, graph)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if not qat:  # a QAT model's fake-quant ops already say int8 everywhere; the converter's INT8-only check wants data
        conv.representative_dataset = representative(ctx)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:  # otherwise float32: the converter adds quantise/dequantise ops at the edges
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return {"converter": type(conv).__name__, "optimizations": ["DEFAULT"],
            "supported_ops": "TFLITE_BUILTINS" if qat else "TFLITE_BUILTINS_INT8",
            "io": "int8" if int8_io else "float32", **_ranges(qat, ctx)}


def is_qat(model) -> bool:
    """True for a tfmot quantisation-aware model: its fake-quant layers carry the int8 ranges."""
    return any(type(layer).__name__.startswith("Quantize") for layer in model.layers)


def _ranges(qat: bool, ctx) -> dict:
    """Where the int8 ranges come from, for the lineage. A QAT model gets no representative dataset: with one the
    converter re-calibrates over the trained ranges (measured: 98.2% instead of 99.6% on a QAT model here)."""
    return {"ranges": "qat", "calibration": None} if qat else {
        "ranges": "calibration", "calibration": ctx.calibration_info(TFLITE_CALIBRATION)}


# ---- post-training modes: each a converter setting on the same Keras model --------------------------


def representative(ctx):
    """The converters' representative dataset: the calibration images one at a time."""
    calib = ctx.calibration_images()

    def gen():
        for i in range(len(calib)):
            yield [calib[i : i + 1]]

    return gen


@register("tflite_fp16", format="tflite", precision="float16", suffix=".tflite",
          description="TFLite float16 weights (dequantised to float32 at load), float I/O", atol=1e-2)
def export_tflite_fp16(model, path: Path, ctx) -> dict:
    tf = ctx.tf
    conv = _converter(model, ctx)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    path.write_bytes(conv.convert())
    return {"converter": _converter_name(model), "optimizations": ["DEFAULT"],
            "supported_types": ["float16"], "io": "float32"}


@register("tflite_dynamic_int8", format="tflite", precision="int8-weights", suffix=".tflite",
          description="TFLite dynamic-range: int8 weights, float activations and I/O, no calibration",
          atol=None, min_agreement=0.95)
def export_tflite_dynamic_int8(model, path: Path, ctx) -> dict:
    conv = _converter(model, ctx)
    conv.optimizations = [ctx.tf.lite.Optimize.DEFAULT]  # no representative dataset: dynamic-range quantisation
    path.write_bytes(conv.convert())
    return {"converter": _converter_name(model), "optimizations": ["DEFAULT"],
            "mode": "dynamic_range", "io": "float32"}


@register("tflite_int8_float_io", format="tflite", precision="int8", suffix=".tflite",
          description="TFLite full-integer int8 inside, float32 input/output, calibrated on training images",
          atol=None, min_agreement=0.95, calibrated=True)
def export_tflite_int8_float_io(model, path: Path, ctx) -> dict:
    return full_int8(_converter(model, ctx), model, path, ctx, int8_io=False)


@register("tflite_int16x8", format="tflite", precision="int16x8", suffix=".tflite",
          description="TFLite int16 activations / int8 weights (16x8), float I/O, calibrated on training images",
          atol=None, min_agreement=0.95, calibrated=True)
def export_tflite_int16x8(model, path: Path, ctx) -> dict:
    tf = ctx.tf
    conv = _converter(model, ctx)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative(ctx)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    path.write_bytes(conv.convert())
    return {"converter": _converter_name(model), "optimizations": ["DEFAULT"],
            "supported_ops": "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8", "io": "float32",
            "calibration": ctx.calibration_info(TFLITE_CALIBRATION)}
