"""Name every TFLite tensor and ONNX node by the Keras layer it came from, so both formats speak of the same layers.

The TFLite converter and tf2onnx both keep the Keras layer name as a path segment of the names they write:
"sequential/conv2d/Relu;sequential/conv2d/BiasAdd;..." (a TFLite op's output tensor, fused names joined by ";")
or "sequential/conv2d/BiasAdd__6" (an ONNX node, tf2onnx's layout helpers get a "__N" suffix). The first part
names the op's main output, so its first segment (after the model's scope) that is a layer name is the layer.
"""

from __future__ import annotations

from edgeport.core.errors import ConfigError


def layer_names(model) -> list[str]:
    """The Keras model's layer names in graph order, input layers left out; [] for a model without layers."""
    return [layer.name for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer"]


def layer_of(name: str, layers: list[str] | set[str]) -> str | None:
    """The Keras layer a tensor or node name belongs to, or None (inputs, outputs, constants of no layer)."""
    known = set(layers)
    main = name.split(";")[0]
    for seg in main.split("/")[1:]:  # the first segment is the model's own scope ("sequential_1")
        seg = seg.split(":")[0].split("__")[0]
        if seg in known:
            return seg
    return None


def check_keep_float(keep: tuple[str, ...] | list[str], layers: list[str], where: str) -> None:
    """A one-line ConfigError naming the first layer in `keep` that the model does not have."""
    for name in keep:
        if name not in layers:
            raise ConfigError(f"{where}: keep_float names layer {name!r}, which the model does not have; its "
                              f"layers: {', '.join(layers) or 'none (a model without Keras layers)'}")


def tflite_nodes(model_bytes: bytes, layers: list[str]) -> dict[str, list[str]]:
    """layer -> output tensor names of the TFLite ops made from it (what the quantiser's denylist takes)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    found: dict[str, list[str]] = {}
    for op in interp._get_ops_details():  # no public API lists ops with their tensors
        for i in op["outputs"]:
            layer = layer_of(names.get(int(i), ""), layers)
            if layer is not None:
                found.setdefault(layer, []).append(names[int(i)])
    return found


def onnx_nodes(proto, layers: list[str]) -> dict[str, list[str]]:
    """layer -> names of the ONNX nodes made from it (what quantize_static's nodes_to_exclude takes)."""
    found: dict[str, list[str]] = {}
    for node in proto.graph.node:
        layer = layer_of(node.name, layers)
        if layer is not None:
            found.setdefault(layer, []).append(node.name)
    return found
