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
    from edgeport.export.qdq_fuse import fuse_for_integer_kernels
    from edgeport.export.qdq_weights import int8_weights

    conversion = export_onnx_fp32(model, path, ctx)  # tf2onnx turns FakeQuantWithMinMaxVars into Q/DQ pairs
    proto = onnx.load(str(path))
    ops = [n.op_type for n in proto.graph.node]
    counts = {op: ops.count(op) for op in QDQ_OPS}
    if not all(counts.values()):
        raise ExportError(f"onnx_qdq: tf2onnx wrote no {'/'.join(QDQ_OPS)} nodes from this QAT model")
    weights = int8_weights(proto)  # float weights + Q/DQ -> int8 initializers + DequantizeLinear
    fused = fuse_for_integer_kernels(proto)  # Relu and float biases out of the way of onnxruntime's QDQ fusion
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return {**conversion, "converter": "tf2onnx.convert.from_keras (QAT model)", "qdq_nodes": counts, **weights,
            **fused}


# How onnxruntime turns the calibration images into ranges, per --calibration-method (its defaults, except entropy's
# histogram: onnxruntime's 128 bins with 128 quantised bins leave one candidate threshold, the full range, so it
# gave exactly minmax's scales here; 2048 bins is the setting of the method's source, TensorRT's 8-bit inference
# talk, and onnxruntime's own for percentile).
CALIBRATORS = {
    "minmax": {"method": "MinMax", "ranges": "absolute min/max of each tensor over all calibration images"},
    "percentile": {"method": "Percentile", "ranges": "99.999th percentile of |x| over a histogram", "num_bins": 2048},
    "entropy": {"method": "Entropy", "ranges": "threshold minimising the KL divergence of the quantised histogram",
                "num_bins": 2048, "num_quantized_bins": 128},
}


def _entropy_ranges(model: Path, reader, tmp: Path) -> Path:
    """Run onnxruntime's entropy calibrator with CALIBRATORS["entropy"]'s histogram (quantize_static does not pass
    num_bins through) and save its ranges as a calibration cache that quantize_static then reads."""
    import inspect

    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator

    from edgeport.core.errors import ExportError

    try:
        from onnxruntime.quantization.calibrate import save_tensors_data
    except ImportError:
        save_tensors_data = None
    if save_tensors_data is None or "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        import onnxruntime

        raise ExportError(f"--calibration-method entropy needs onnxruntime's calibration cache (quantize_static's "
                          f"calibration_cache_path), which onnxruntime {onnxruntime.__version__} lacks; upgrade it "
                          "or use minmax or percentile")
    settings = CALIBRATORS["entropy"]
    calibrator = create_calibrator(model, augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"num_bins": settings["num_bins"],
                                                  "num_quantized_bins": settings["num_quantized_bins"]})
    calibrator.collect_data(reader)
    cache = tmp / "ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


@register("onnx_static_int8", format="onnx", precision="int8", suffix=".onnx",
          description="ONNX static int8 QDQ via onnxruntime.quantization: pre-processed, per-channel, calibrated",
          atol=None, min_agreement=0.95, calibrated=True)
def export_onnx_static_int8(model, path: Path, ctx) -> dict:
    import contextlib
    import sys
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

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[ctx.cfg.calibration_method]
    calib = ctx.calibration_images()
    with tempfile.TemporaryDirectory(prefix="edgeport-onnx-") as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        conversion = export_onnx_fp32(model, fp32, ctx)
        quant_pre_process(str(fp32), str(pre))  # shape inference + graph optimisation, as onnxruntime advises
        excluded = []
        if ctx.keep_float:  # some layers stay float (export/mixed.py)
            from edgeport.export.mixed import onnx_excluded

            excluded = onnx_excluded(pre, model, ctx.keep_float)
        # The histogram calibrators (percentile, entropy) stack every feed's outputs with np.asarray, which fails
        # on a short last batch ("inhomogeneous shape"): they get one image per feed, so all feeds are equal.
        reader = Reader("image", calib, 32 if method is CalibrationMethod.MinMax else 1)
        cache = None
        with contextlib.redirect_stdout(sys.stderr):  # the histogram calibrators print progress to stdout
            if method is CalibrationMethod.Entropy:
                cache, reader = _entropy_ranges(pre, reader, Path(tmp)), None
            quantize_static(str(pre), str(path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                            nodes_to_exclude=excluded,
                            **({} if cache is None else {"calibration_cache_path": str(cache)}))
    return {**conversion, "quantizer": "onnxruntime.quantization.quantize_static", "pre_process": True,
            "format": "QDQ", "per_channel": True, "activations": "int8", "weights": "int8",
            "calibrator": CALIBRATORS[ctx.cfg.calibration_method], "calibrate_method": method.name,
            "calibration": ctx.calibration_info(ctx.cfg.calibration_method), "excluded_nodes": len(excluded)}

