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

    tf = ctx.tf
    shape = (None, *model.input_shape[1:])
    spec = (tf.TensorSpec(shape, tf.float32, name="image"),)  # tf2onnx needs an explicit signature
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    onnx.save(proto, str(path))
    return {"converter": "tf2onnx.convert.from_keras", "tf2onnx": tf2onnx.__version__, "opset": OPSET}
