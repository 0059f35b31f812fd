"""Name every TFLite tensor and ONNX node by the Keras layer it came from, so both formats speak of the same layers.

The TFLite converter and tf2onnx both keep the Keras layer name as a path segment of the names they write:
"model/re_lu/Relu;model/batch_normalization/FusedBatchNormV3;model/conv2d/Conv2D" (a TFLite op's output tensor:
conv, batch norm and ReLU fused into one op, each layer's name joined by ";"), or an ONNX node "model/conv2d/Conv2D"
whose output tensor is "model/re_lu/Relu:0" (tf2onnx's layout helpers get a "__N" suffix). An op belongs to every
layer its names mention (keeping any of them in float keeps the op in float); its output holds the values of the
last of them in model order.
"""

from __future__ import annotations

from edgeport.core.errors import ConfigError


def layer_names(model) -> list[str]:
    """The Keras model's layer names in graph order, input layers left out; [] for a model without layers."""
    return [layer.name for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer"]


def layers_in(name: str, layers: list[str]) -> list[str]:
    """Every Keras layer a tensor or node name mentions, in model order (a fused op names each layer it holds)."""
    segs = {seg.split(":")[0].split("__")[0] for part in name.split(";") for seg in part.split("/")[1:]}
    return [layer for layer in layers if layer in segs]  # the first segment is the model's scope ("sequential_1")


def layer_of(name: str, layers: list[str]) -> str | None:
    """The Keras layer whose output a tensor holds: the last one its name mentions (conv, BN and ReLU fused into
    one op output ReLU's values), or None (inputs, constants, names of no layer)."""
    found = layers_in(name, layers)
    return found[-1] if found else None


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
            for layer in layers_in(names.get(int(i), ""), layers):
                found.setdefault(layer, []).append(names[int(i)])
    return found


def onnx_nodes(proto, layers: list[str]) -> dict[str, list[str]]:
    """layer -> names of the ONNX nodes made from it (what quantize_static's nodes_to_exclude takes)."""
    found: dict[str, list[str]] = {}
    for node in proto.graph.node:
        mentioned = set(layers_in(node.name, layers)).union(*(layers_in(o, layers) for o in node.output))
        for layer in mentioned:
            found.setdefault(layer, []).append(node.name)
    return found
