"""Keras 3 -> tf-keras: rebuild a Keras 3 model of standard layers in tf-keras, copy its weights, prove it equal.

Why: tensorflow-model-optimization (pruning, clustering, QAT) and tf2onnx take only tf-keras models, and tfmot's
Keras 3 support is an open upstream request. `tf_keras.models.model_from_json(keras3_model.to_json())` fails
(Keras 3's InputLayer says `batch_shape`, its initializers and dtype policies serialise differently), so the
model is rebuilt here layer by layer:

    1. every layer becomes the tf-keras layer of the same class, built from its own `get_config()` filtered to
       the arguments the tf-keras class takes (dtype policies become their names; initializers, regularizers
       and constraints are re-made from class name and config);
    2. the graph is replayed from the Functional config's inbound nodes (Sequential: in order), so shared
       layers and residual adds come along; nested Sequential/Functional models (a keras.applications backbone,
       blocks) are replayed inline, so the rebuild is flat (tfmot's quantize_model refuses a model inside a model)
       and a name that repeats across blocks is made unique (`BridgeResult.renamed` maps it back);
    3. weights are copied layer by layer (shapes checked), and the rebuilt model must give the same outputs as the
       original on the sample images: max |dp| <= `atol` (1e-5), else nothing is returned.

A model this cannot rebuild (a custom or subclassed layer, a Keras 3 op with no tf-keras layer, several inputs
or outputs) raises BridgeError naming the layer; the post-training targets then convert the Keras 3 model
directly (train/bring.py).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from edgeport.core.errors import EdgeportError

ATOL = 1e-5  # largest |output difference| allowed between the Keras 3 model and its tf-keras rebuild
# What every tf-keras Layer takes through **kwargs beside its own arguments.
BASE_KWARGS = {"name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size", "input_dim",
               "dynamic", "autocast"}
NESTED = {"Functional", "Sequential", "Model"}  # Keras 3 model classes that can appear as a layer


class BridgeError(EdgeportError):
    """A Keras 3 model that cannot be rebuilt in tf-keras; the message names the layer."""


@dataclass(frozen=True)
class BridgeResult:
    model: object  # the tf-keras model
    max_abs_diff: float  # largest |output difference| from the Keras 3 model on the sample
    images: int  # sample size the difference was measured on
    layers: int  # layers rebuilt (nested models' layers included: the rebuild is flat)
    renamed: dict[str, str]  # a tf-keras layer name -> the user's BLOCK/NAME, where a name repeated

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "images": self.images, "layers": self.layers, "atol": ATOL,
                "renamed": self.renamed}

    def user_name(self, name: str) -> str:
        """The user's name for a layer of the rebuild (messages speak the user's names)."""
        return self.renamed.get(name, name)


def user_names(text: str, renamed: dict[str, str]) -> str:
    """`text`, a message about the rebuild's layers, with each renamed layer put back as the user's BLOCK/NAME."""
    import re

    for new in sorted(renamed, key=len, reverse=True):
        text = re.sub(rf"(?<![\w/]){re.escape(new)}(?!\w)", renamed[new], text)
    return text


def is_keras3(model) -> bool:
    """True for a model of the Keras 3 package (`keras`), False for tf-keras (`tf_keras`) or anything else."""
    module = type(model).__module__
    return module == "keras" or module.startswith("keras.")


def to_tf_keras(model, sample: np.ndarray, input_shape: tuple | None = None, atol: float = ATOL) -> BridgeResult:
    """Rebuild the Keras 3 `model` in tf-keras and check it against the original on `sample` (model input, float32).

    `input_shape` (H, W, C) fixes an input the original leaves open (None height/width)."""
    import tf_keras

    rebuild = _Rebuild(tf_keras)
    new = rebuild.model(model, input_shape)
    rebuild.copy_weights()
    want = np.asarray(model(sample, training=False))
    got = np.asarray(new(sample, training=False))
    if want.shape != got.shape:
        raise BridgeError(f"the rebuilt model gives outputs of shape {got.shape}, the original {want.shape}")
    diff = float(np.abs(want - got).max()) if want.size else 0.0
    if not diff <= atol:
        raise BridgeError(f"the tf-keras rebuild differs from the Keras 3 model by max |dp| {diff:.1e} > {atol:.0e} "
                          "(a layer whose Keras 3 and tf-keras versions compute differently)")
    return BridgeResult(new, diff, len(sample), len(rebuild.pairs), rebuild.renamed)


# ---- rebuilding ------------------------------------------------------------------------------------------------


class _Rebuild:
    """One rebuild: nested Sequential/Functional blocks are replayed inline, so the tf-keras model is flat (tfmot's
    quantize_model refuses a model inside a model), and every layer gets a name unique in it. Default names repeat
    once blocks are flattened (two blocks built in two Keras sessions each hold a "conv2d"): a repeated name becomes
    BLOCK_NAME, and `renamed` maps it back to the user's path, BLOCK/NAME. `pairs` are (Keras 3, tf-keras) layers
    in build order, for the weight copy; a layer used twice (shared) is built once."""

    def __init__(self, tf_keras):
        self.tf_keras = tf_keras
        self.pairs: list[tuple] = []
        self.renamed: dict[str, str] = {}  # tf-keras name -> the user's path to the layer
        self._built: dict[int, object] = {}  # id(Keras 3 layer) -> its tf-keras twin
        self._names: set[str] = set()

    def model(self, model, input_shape: tuple | None):
        if type(model).__name__ != "Sequential":
            _graph(model, top=True)  # a subclassed model is refused before anything else is asked of it
        shape = input_shape or _input_shape(model, None)
        name = _input_name(model)
        x = self.tf_keras.Input(shape=shape, name=name, dtype=_input_dtype(model))
        self._names.add(name or "input_1")
        return self.tf_keras.Model(x, self.apply(model, x, (), top=True), name=model.name)

    def apply(self, model, x, path: tuple, top: bool = False):
        """`model`'s layers applied to the tf-keras tensor `x`; the output tensor."""
        if type(model).__name__ == "Sequential":
            for layer in model.layers:
                x = self.call(layer, [x], {}, path)
            return x
        return self._replay(model, _graph(model, top), x, path)

    def call(self, layer, args: list, kwargs: dict, path: tuple):
        """Call the twin of Keras 3 `layer` (a nested model: its layers, inline) on rebuilt tensors."""
        if type(layer).__name__ in NESTED:
            if len(args) != 1 or any(v is not None for k, v in kwargs.items() if k not in ("training", "mask")):
                raise BridgeError(f"nested model {layer.name!r} is called with {len(args)} inputs; the bridge "
                                  "flattens nested models of one input")
            return self.apply(layer, args[0], (*path, layer.name))
        twin = self._built.get(id(layer))
        if twin is None:
            name = self._unique(layer.name, path)
            twin = self._built[id(layer)] = _layer(layer, self.tf_keras, name)
            self.pairs.append((layer, twin))
        return twin(*args, **kwargs)

    def _unique(self, name: str, path: tuple) -> str:
        base = "_".join((*path, name))
        new, i = (name if name not in self._names else base), 2
        while new in self._names:
            new, i = f"{base}_{i}", i + 1
        self._names.add(new)
        if new != name:
            self.renamed[new] = "/".join((*path, name))
        return new

    def _replay(self, model, cfg: dict, x, path: tuple):
        ins, outs = _endpoints(cfg["input_layers"]), _endpoints(cfg["output_layers"])
        tensors: dict[tuple, object] = {ins[0]: x}
        pending = [e for e in cfg["layers"] if e["class_name"] != "InputLayer"]
        while pending:  # configs list layers in creation order; replay each once its inputs exist
            progressed = False
            for entry in list(pending):
                name = entry["name"]
                nodes = entry.get("inbound_nodes") or []
                try:
                    calls = [(_args(n.get("args", []), tensors), _args(n.get("kwargs", {}), tensors)) for n in nodes]
                except KeyError:
                    continue  # an input not made yet
                try:
                    original = model.get_layer(name)
                except ValueError:  # keras.ops calls in a Functional graph are operations, not layers
                    raise BridgeError(f"{name!r} ({entry['class_name']}) is a Keras 3 operation, not a layer; "
                                      "tf-keras has no twin for it") from None
                for i, (args, kwargs) in enumerate(calls):
                    out = self.call(original, list(args), kwargs, path)
                    for j, t in enumerate(out if isinstance(out, list | tuple) else [out]):
                        tensors[(name, i, j)] = t
                pending.remove(entry)
                progressed = True
            if not progressed:
                raise BridgeError(f"model {model.name!r}: could not replay the layer graph (layer "
                                  f"{pending[0]['name']!r} waits for an input that no layer makes)")
        return tensors[outs[0]]

    def copy_weights(self) -> None:
        """Copy every layer's weights from the Keras 3 model to its twin (shapes checked)."""
        for layer, twin in self.pairs:
            weights, slots = layer.get_weights(), twin.get_weights()
            shapes = [w.shape for w in weights]
            if shapes != [w.shape for w in slots]:
                raise BridgeError(f"layer {layer.name!r}: weights {shapes} do not fit its tf-keras rebuild "
                                  f"{[w.shape for w in slots]}")
            if weights:
                twin.set_weights(weights)


def _graph(model, top: bool) -> dict:
    """A Functional model's config of layers and inbound nodes, to replay; BridgeError for a subclassed model."""
    kind = type(model).__name__
    if kind in ("Functional", "Model") and hasattr(model, "get_config"):
        try:
            cfg = model.get_config()
        except Exception:  # a subclassed Model has no config of layers to replay
            cfg = {}
        if isinstance(cfg, dict) and "layers" in cfg and "input_layers" in cfg:
            ins, outs = _endpoints(cfg["input_layers"]), _endpoints(cfg["output_layers"])
            if len(ins) != 1 or len(outs) != 1:
                raise BridgeError(f"model {model.name!r} has {len(ins)} input(s) and {len(outs)} output(s); edgeport "
                                  "takes models with one image input and one class output")
            return cfg
    what = "the model" if top else f"nested model {model.name!r}"
    raise BridgeError(f"{what} ({kind}) is subclassed: only Sequential and Functional models can be rebuilt in "
                      "tf-keras")


def _endpoints(value) -> list[tuple]:
    """[name, node, tensor] or a list of them -> [(name, node, tensor), ...]."""
    if value and isinstance(value[0], str):
        value = [value]
    return [tuple(v) for v in value]


def _args(value, tensors: dict):
    """A node's recorded args/kwargs with every Keras 3 tensor reference replaced by the rebuilt tensor."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return tensors[tuple(value["config"]["keras_history"])]
    if isinstance(value, dict):
        return {k: _args(v, tensors) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_args(v, tensors) for v in value]
    return value


def _layer(layer, tf_keras, name: str):
    """The tf-keras layer matching one Keras 3 layer, named `name`."""
    cls = type(layer).__name__
    target = getattr(tf_keras.layers, cls, None)
    if not type(layer).__module__.startswith("keras.") or target is None:
        raise BridgeError(f"layer {layer.name!r} ({cls}) is not a standard Keras layer with a tf-keras twin, so "
                          "training-time methods cannot use this model")
    try:
        config = _translate(layer.get_config(), target, tf_keras, layer.name)
        return target(**{**config, "name": name})
    except BridgeError:
        raise
    except Exception as exc:  # tf-keras refusing an argument value: name the layer, one line
        raise BridgeError(f"layer {layer.name!r} ({cls}): tf-keras cannot build it ({_first_line(exc)})") from None


def _translate(config: dict, target, tf_keras, name: str) -> dict:
    """A Keras 3 layer config as keyword arguments of the tf-keras class `target`."""
    accepted = set(BASE_KWARGS)
    for klass in inspect.getmro(target):
        if klass is object:
            continue
        params = inspect.signature(klass.__init__).parameters
        accepted |= {p for p, v in params.items() if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)}
    accepted.discard("self")
    out = {}
    for key, value in config.items():
        if key not in accepted:
            continue
        if key == "dtype":
            value = _dtype_name(value)
        elif key.endswith(("_initializer", "_regularizer", "_constraint")) and isinstance(value, dict):
            value = _object(value, key, tf_keras, name)
        elif key == "activation" or key.endswith("_activation"):
            if isinstance(value, dict):
                raise BridgeError(f"layer {name!r}: activation {value.get('class_name', value)!r} is not a built-in "
                                  "Keras activation")
            if isinstance(value, str):
                try:
                    tf_keras.activations.get(value)
                except Exception:
                    raise BridgeError(f"layer {name!r}: activation {value!r} has no tf-keras equivalent") from None
        out[key] = value
    return out


def _object(value: dict, key: str, tf_keras, name: str):
    """Re-make a serialised initializer/regularizer/constraint in tf-keras. Initializers do not matter (weights are
    copied), so one tf-keras lacks becomes the default; a regularizer or constraint changes fine-tuning, so not."""
    kind = key.rsplit("_", 1)[1] + "s"  # initializers | regularizers | constraints
    module = getattr(tf_keras, kind)
    cfg = {k: v for k, v in (value.get("config") or {}).items() if v is not None}
    try:
        return module.get({"class_name": value.get("class_name"), "config": cfg})
    except Exception:
        try:
            return module.get({"class_name": value.get("class_name"), "config": {}})
        except Exception:
            if kind == "initializers":
                return None
            raise BridgeError(f"layer {name!r}: {key} {value.get('class_name')!r} has no tf-keras equivalent") from None


def _dtype_name(value):
    """A Keras 3 DTypePolicy config (or a plain name) -> the policy name tf-keras takes."""
    if isinstance(value, dict):
        return (value.get("config") or {}).get("name", "float32")
    return value


def _input_shape(model, input_shape: tuple | None) -> tuple:
    if input_shape is not None:
        return tuple(input_shape)
    try:
        return tuple(model.input_shape[1:])
    except Exception:
        raise BridgeError(f"model {model.name!r} has no input shape (a Sequential model never built)") from None


def _input_name(model) -> str | None:
    try:
        return model.inputs[0].name.split(":")[0]
    except Exception:
        return None


def _input_dtype(model) -> str | None:
    try:
        return _dtype_name(model.inputs[0].dtype)
    except Exception:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
