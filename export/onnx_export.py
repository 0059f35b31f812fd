"""ONNX converters through tf2onnx, checked with onnx.checker after writing."""

from __future__ import annotations

from pathlib import Path

from edgeport.export.targets import register

OPSET = 17  # supported by onnxruntime >= 1.14 and onnxruntime-web


@register("onnx_fp32", format="onnx", precision="float32", suffix=".onnx",
          description="ONNX float32 via tf2onnx, dynamic batch", atol=1e-4)
def export_onnx_fp32(model, path: Path, ctx) -> dict:
    import onnx
    import tf2onnx

    from edgeport.train.bring import is_tf_keras

    tf = ctx.tf
    shape = (None, *model.input_shape[1:])
    spec = (tf.TensorSpec(shape, tf.float32, name="image"),)  # tf2onnx needs an explicit signature
    if is_tf_keras(model):
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
        converter = "tf2onnx.convert.from_keras"
    else:  # from_keras fails on Keras 3 models; their call (or a SavedModel signature) traces as a tf.function
        fn = tf.function(lambda x: model(x, training=False))
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
        converter = "tf2onnx.convert.from_function"
    onnx.save(proto, str(path))
    return {"converter": converter, "tf2onnx": tf2onnx.__version__, "opset": OPSET}


# ---- quantised ONNX --------------------------------------------------------------------------------------------

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@register("onnx_qdq", format="onnx", precision="int8", suffix=".onnx",
          description="ONNX QuantizeLinear/DequantizeLinear from a QAT model via tf2onnx (needs method qat/pqat/cqat)",
          atol=None, min_agreement=0.95)
def export_onnx_qdq(model, path: Path, ctx) -> dict:
    import onnx

    from edgeport.core.errors import ExportError
    from edgeport.export.tflite_export import is_qat

    if not is_qat(model):
        raise ExportError("onnx_qdq needs a quantisation-aware model (method qat, pqat or cqat); this model has no "
                          "fake-quantisation layers")
    from edgeport.export.qdq_weights import int8_weights

    conversion = export_onnx_fp32(model, path, ctx)  # tf2onnx turns FakeQuantWithMinMaxVars into Q/DQ pairs
    proto = onnx.load(str(path))
    ops = [n.op_type for n in proto.graph.node]
    counts = {op: ops.count(op) for op in QDQ_OPS}
    if not all(counts.values()):
        raise ExportError(f"onnx_qdq: tf2onnx wrote no {'/'.join(QDQ_OPS)} nodes from this QAT model")
    weights = int8_weights(proto)  # float weights + Q/DQ -> int8 initializers + DequantizeLinear
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return {**conversion, "converter": "tf2onnx.convert.from_keras (QAT model)", "qdq_nodes": counts, **weights}


@register("onnx_static_int8", format="onnx", precision="int8", suffix=".onnx",
          description="ONNX static int8 QDQ via onnxruntime.quantization: pre-processed, per-channel, calibrated",
          atol=None, min_agreement=0.95)
def export_onnx_static_int8(model, path: Path, ctx) -> dict:
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        """One feed of up to 32 calibration images per call, then None (the model has a dynamic batch)."""

        def __init__(self, name, images, batch=32):
            self._feeds = iter([{name: images[i : i + batch]} for i in range(0, len(images), batch)])

        def get_next(self):
            return next(self._feeds, None)

    calib = ctx.calibration_images()
    with tempfile.TemporaryDirectory(prefix="edgeport-onnx-") as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        conversion = export_onnx_fp32(model, fp32, ctx)
        quant_pre_process(str(fp32), str(pre))  # shape inference + graph optimisation, as onnxruntime advises
        excluded = []
        if ctx.keep_float:  # some layers stay float (export/mixed.py)
            from edgeport.export.mixed import onnx_excluded

            excluded = onnx_excluded(pre, model, ctx.keep_float)
        quantize_static(str(pre), str(path), Reader("image", calib), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded)
    return {**conversion, "quantizer": "onnxruntime.quantization.quantize_static", "pre_process": True,
            "format": "QDQ", "per_channel": True, "activations": "int8", "weights": "int8",
            "calibrate_method": "MinMax", "calibration": ctx.calibration_info(), "excluded_nodes": len(excluded)}

