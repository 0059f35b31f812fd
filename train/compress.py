"""Training-time compression with tensorflow-model-optimization: each method is a short fine-tune of the
run's trained model.keras, written as its own .keras file and measured after stripping.

    prune       magnitude pruning to `sparsity` (polynomial schedule sized to the fine-tune)
    sparse_2_4  2 zeros in every group of 4 input-channel weights, on the layers where that applies
    cluster     `clusters` shared values per kernel, then strip_clustering
    qat         quantisation-aware training (default 8-bit scheme)
    pqat        prune, then QAT that keeps the zeros (Default8BitPrunePreserveQuantizeScheme)
    cqat        cluster, then QAT that keeps the clusters (Default8BitClusterPreserveQuantizeScheme)

After each, every kernel's sparsity and number of distinct values is measured; missing a target by more
than `tolerance` raises ExportError and writes nothing. `check_applicable` finds the user errors (no layer
qualifies for 2:4, a layer QAT cannot quantise) before any training starts.

Each method is seeded from its own settings before anything random happens, so a variant's result does not
depend on what ran before it in the process: a recipe gives the same models run in one process or spread over
Ray tasks. Fine-tunes run under a tf.distribute strategy (train/distribute.py); batch_size is per replica.
"""

from __future__ import annotations

import math
import sys
import time
import weakref
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np

from edgeport.core import files
from edgeport.core.errors import ConfigError, ExportError, ModelFileError


class Method(str, Enum):
    FLOAT = "float"  # the trained model as it is: no fine-tune
    PRUNE = "prune"
    SPARSE_2_4 = "sparse_2_4"
    CLUSTER = "cluster"
    QAT = "qat"
    PQAT = "pqat"
    CQAT = "cqat"


QUANTISED = (Method.QAT, Method.PQAT, Method.CQAT)  # saved with tfmot wrappers: see `model_suffix`, `load_model`
PROBS_SUFFIX = ".probs.npz"  # a fine-tuned model's test-set probabilities (plain npz), beside the model
KERNEL_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")  # the layers whose kernels are pruned / clustered
SETTINGS = {  # the settings each method reads; a recipe may set only these (plus the shared fine-tune ones)
    Method.FLOAT: (),
    Method.PRUNE: ("sparsity", "min_weights"),
    Method.SPARSE_2_4: (),
    Method.CLUSTER: ("clusters",),
    Method.QAT: (),
    Method.PQAT: ("sparsity", "min_weights"),
    Method.CQAT: ("clusters",),
}
FINE_TUNE_SETTINGS = ("epochs", "learning_rate", "batch_size", "seed")


@dataclass(frozen=True)
class CompressConfig:
    method: Method = Method.PRUNE
    sparsity: float = 0.8  # prune/pqat: fraction of zero weights in every pruned kernel
    min_weights: int = 1024  # prune/pqat: smaller kernels stay dense (pruning the 288-weight first conv cost 0.4 pt)
    clusters: int = 16  # cluster/cqat: distinct weight values per clustered kernel
    epochs: float = 1.0  # fine-tune length in passes over the training split (fractions allowed); pqat/cqat: each phase
    learning_rate: float = 5e-4  # Adam, cosine-decayed to 0 over the fine-tune
    batch_size: int = 128
    seed: int = 0  # seeds the fine-tune's shuffling and initialisation
    tolerance: float = 0.01  # allowed miss of a sparsity target: one point

    def validate(self) -> None:
        if not isinstance(self.method, Method):
            raise ConfigError(f"unknown method {self.method!r}; expected one of: {', '.join(m.value for m in Method)}")
        if not 0 < self.sparsity < 1:
            raise ConfigError(f"sparsity must be in (0, 1), got {self.sparsity}")
        if not (isinstance(self.min_weights, int) and self.min_weights >= 0):
            raise ConfigError(f"min_weights must be a whole number >= 0, got {self.min_weights}")
        if not (isinstance(self.clusters, int) and 2 <= self.clusters <= 256):
            raise ConfigError(f"clusters must be an integer in [2, 256], got {self.clusters}")
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not isinstance(self.seed, int):
            raise ConfigError(f"seed must be a whole number, got {self.seed!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")

    def settings(self) -> dict:
        """The settings that matter for this method, for the manifest's lineage."""
        keys = SETTINGS[self.method] + (FINE_TUNE_SETTINGS if self.method is not Method.FLOAT else ())
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class CompressResult:
    path: Path  # the written .keras file
    lineage: dict  # method, settings, schedule, per-layer measurements, test accuracy, seconds


# ---- what applies where --------------------------------------------------------------------------------------


def kernel_layers(model) -> list:
    return [layer for layer in model.layers if type(layer).__name__ in KERNEL_LAYERS]


def layers_2_4(model) -> tuple[list, dict[str, str]]:
    """(layers that take 2:4 sparsity, {skipped layer: why}). The pattern runs along input channels (TFLite's
    last kernel axis), so a layer qualifies when it is a Conv2D or Dense whose input channels divide by 4."""
    qualify, skipped = [], {}
    for layer in kernel_layers(model):
        if type(layer).__name__ == "DepthwiseConv2D":
            skipped[layer.name] = "depthwise kernels have one input channel per filter"
        elif (cin := int(layer.kernel.shape[-2])) % 4:
            skipped[layer.name] = f"{cin} input channel(s), not a multiple of 4"
        else:
            qualify.append(layer)
    return qualify, skipped


def layers_to_prune(model, min_weights: int) -> tuple[list, dict[str, str]]:
    """(layers magnitude pruning applies to, {skipped layer: why}). tfmot's pruning registry lists DepthwiseConv2D
    with no prunable weight (wrapping one prunes nothing), and kernels under `min_weights` stay dense."""
    chosen, skipped = [], {}
    for layer in kernel_layers(model):
        if type(layer).__name__ == "DepthwiseConv2D":
            skipped[layer.name] = "depthwise kernel: tfmot does not prune DepthwiseConv2D; left dense"
        elif _size(layer) < min_weights:
            skipped[layer.name] = f"{_size(layer)} weights < min_weights {min_weights}: left dense"
        else:
            chosen.append(layer)
    return chosen, skipped


def layers_to_cluster(model, clusters: int) -> tuple[list, dict[str, str]]:
    """(layers weight clustering applies to, {skipped layer: why}). tfmot does not cluster DepthwiseConv2D (its
    registry: "big unrecoverable accuracy loss"), and a kernel of at most `clusters` weights has nothing to share."""
    chosen, skipped = [], {}
    for layer in kernel_layers(model):
        if type(layer).__name__ == "DepthwiseConv2D":
            skipped[layer.name] = "depthwise kernel: tfmot does not cluster DepthwiseConv2D; left as trained"
        elif _size(layer) <= clusters:
            skipped[layer.name] = f"{_size(layer)} weights <= {clusters} clusters: left as trained"
        else:
            chosen.append(layer)
    return chosen, skipped


def check_applicable(model, cfg: CompressConfig) -> None:
    """Raise ConfigError when `cfg.method` cannot apply to `model`; cheap, run before any training."""
    cfg.validate()
    if cfg.method is Method.FLOAT:
        return
    if not kernel_layers(model):
        raise ConfigError(f"{cfg.method.value}: the model has no Conv2D, DepthwiseConv2D or Dense layer to compress")
    if cfg.method in (Method.PRUNE, Method.PQAT) and not layers_to_prune(model, cfg.min_weights)[0]:
        why = "; ".join(f"{k}: {v}" for k, v in layers_to_prune(model, cfg.min_weights)[1].items())
        raise ConfigError(f"{cfg.method.value}: no layer would be pruned ({why}); lower min_weights")
    if cfg.method in (Method.CLUSTER, Method.CQAT) and not layers_to_cluster(model, cfg.clusters)[0]:
        why = "; ".join(f"{k}: {v}" for k, v in layers_to_cluster(model, cfg.clusters)[1].items())
        raise ConfigError(f"{cfg.method.value}: no layer would be clustered ({why})")
    if cfg.method is Method.SPARSE_2_4:
        qualify, skipped = layers_2_4(model)
        if not qualify:
            why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
            raise ConfigError(f"sparse_2_4: no layer qualifies for 2:4 sparsity (needs a Conv2D or Dense layer with "
                              f"input channels a multiple of 4; {why})")
    if cfg.method in QUANTISED:
        _check_quantisable(model)


_QUANTISABLE = weakref.WeakSet()  # models `_check_quantisable` accepted, forgotten with the model


def _check_quantisable(model) -> None:
    """Apply tfmot's QAT wrapping (no training) and turn its refusal into a ConfigError naming the layers. The layer
    registry alone is not enough: BatchNormalization is only supported after a Conv/Dense. A model that passed once
    is remembered: wrapping takes a second for a small CNN but several for a mobilenet_v2's ~100 layers, and a
    recipe checks each QAT variant before training and again when it runs."""
    import re

    if model in _QUANTISABLE:
        return
    try:
        quantize(model, Method.QAT)
        _QUANTISABLE.add(model)
    except Exception as exc:  # tfmot raises RuntimeError/ValueError: "Layer ln:<class '...LayerNorm...'> is not ..."
        found = re.findall(r"Layer (\S+?):<class '[\w.]*?(\w+)'>", str(exc))
        if not found:
            raise ConfigError(f"QAT cannot quantise this model ({str(exc).strip().splitlines()[0][:200]})") from None
        raise ConfigError(f"QAT cannot quantise layer(s) {', '.join(f'{n} ({c})' for n, c in found)}: tfmot's "
                          "default 8-bit scheme does not support that layer type") from None


# ---- measuring ------------------------------------------------------------------------------------------------


def _kernel(layer) -> np.ndarray | None:
    """The float kernel of a Conv2D/DepthwiseConv2D/Dense layer, bare or inside a tfmot QuantizeWrapper (whose
    wrapped layer's `kernel` is the fake-quantised tensor, so read the variable)."""
    inner = getattr(layer, "layer", layer)
    if type(inner).__name__ not in KERNEL_LAYERS:
        return None
    for var in layer.weights:
        if var.name.split("/")[-1].split(":")[0] in ("kernel", "depthwise_kernel"):
            return np.asarray(var.numpy())
    return None


def kernel_stats(model, layer_names: list[str] | None = None) -> dict:
    """Per kernel: weights, zeros, sparsity and distinct values; overall sparsity over `layer_names` (all if None)."""
    layers, zeros, total = {}, 0, 0
    for layer in model.layers:
        k = _kernel(layer)
        if k is None:
            continue
        name = getattr(getattr(layer, "layer", layer), "name", layer.name)
        nz = int(k.size - np.count_nonzero(k))
        per_channel = max(len(np.unique(k[..., c])) for c in range(k.shape[-1]))
        layers[name] = {"weights": int(k.size), "zeros": nz, "sparsity": round(nz / k.size, 4),
                        "unique": int(len(np.unique(k))), "unique_per_channel_max": int(per_channel)}
        if layer_names is None or name in layer_names:
            zeros, total = zeros + nz, total + k.size
    return {"layers": layers, "overall_sparsity": round(zeros / total, 4) if total else 0.0,
            "counted_layers": sorted(layer_names) if layer_names is not None else sorted(layers)}


def _size(layer) -> int:
    return int(np.prod(layer.weights[0].shape))


def holds_2_4(kernel: np.ndarray) -> bool:
    """True when every group of 4 consecutive input-channel weights (TFLite layout) has at most 2 nonzeros."""
    rows = np.moveaxis(kernel, -1, 0).reshape(-1, kernel.shape[-2])  # (cout * h * w, cin)
    if rows.shape[1] % 4:
        return False
    return bool((np.count_nonzero(rows.reshape(rows.shape[0], -1, 4), axis=-1) <= 2).all())


# ---- the methods ----------------------------------------------------------------------------------------------


class Compressor:
    """Fine-tunes one trained model with each requested method; pqat/cqat reuse a prune/cluster result with the
    same settings instead of training it twice."""

    def __init__(self, model_path: str | Path, data, quiet: bool = False, spec=None, strategy: str = "auto"):
        from edgeport.train.distribute import distribution
        from edgeport.train.tf import import_tf, load_keras_model

        self.tf, self.keras = import_tf()
        import tensorflow_model_optimization as tfmot

        self.tfmot = tfmot
        self.dist = distribution(strategy)
        self.model_path = Path(model_path)
        self.data = data  # an edgeport.core.data.Dataset
        self.spec = spec or data.spec  # the run's input spec: how pixels become this model's input
        with self.dist.scope():
            self.base, self.folded = fold_dense_batchnorm(load_keras_model(model_path),
                                                          self.spec.normalise(data.train_images[:256]))
        self.verbose = 0 if quiet else (1 if sys.stdout.isatty() else 2)
        self._memo: dict[tuple, tuple[object, dict]] = {}

    def run(self, cfg: CompressConfig, out_dir: str | Path, name: str) -> CompressResult:
        """Apply `cfg.method`, check its targets, save it atomically as out_dir/<name>.keras
        (QAT family: <name>.qat.h5 + <name>.start.keras, see `save_qat`)."""
        check_applicable(self.base, cfg)
        t0 = time.perf_counter()
        with self.dist.scope():
            self.keras.utils.set_random_seed(cfg.seed)  # before wrapping: k-means++ centroids are drawn there
            model, lineage = self._apply(cfg)
        lineage["distribution"] = self.dist.record(cfg.batch_size, cfg.learning_rate)
        lineage["folded_into_dense"] = self.folded  # BN (+ ReLU) layers folded into their Dense, before every method
        probs = self._probs(model)
        lineage["keras_test_accuracy"] = float((probs.argmax(1) == self.data.test_labels).mean())
        lineage["seconds"] = round(time.perf_counter() - t0, 1)
        out = Path(out_dir) / f"{name}{model_suffix(cfg.method)}"
        predictions = Path(out_dir) / f"{name}{PROBS_SUFFIX}"
        with files.atomic_path(predictions) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, probs=probs.astype(np.float32), labels=self.data.test_labels)
        lineage["source_predictions"] = predictions.name
        if cfg.method in QUANTISED:
            save_qat(model, lineage.pop("_start"), cfg.method, out)
        else:
            with files.atomic_path(out) as tmp:
                model.save(tmp)
        return CompressResult(out, lineage)

    def _apply(self, cfg: CompressConfig) -> tuple[object, dict]:
        m = cfg.method
        if m is Method.FLOAT:
            return self.base, {"method": m.value, "settings": {}}
        if m in (Method.PRUNE, Method.SPARSE_2_4, Method.CLUSTER):
            model, lineage = self._memoised(cfg)
            return model, dict(lineage)
        first = first_phase(cfg)
        base, before = (self.base, None) if first is None else self._memoised(first)
        model, lineage = self._qat(base, cfg)
        if before is not None:
            lineage["first_phase"] = before
            self._check_preserved(cfg, before, lineage)
        return model, lineage

    def _memoised(self, cfg: CompressConfig) -> tuple[object, dict]:
        key = memo_key(cfg)
        if key not in self._memo:
            fn = {Method.PRUNE: self._prune, Method.SPARSE_2_4: self._prune_2_4, Method.CLUSTER: self._cluster}
            self._memo[key] = fn[cfg.method](cfg)
        return self._memo[key]

    def phase(self, cfg: CompressConfig) -> dict | None:
        """The lineage of `cfg`'s memoised fine-tune (prune, sparse_2_4, cluster), for `adopt` in another process."""
        found = self._memo.get(memo_key(cfg))
        return None if found is None else found[1]

    def adopt(self, cfg: CompressConfig, model_path: str | Path, lineage: dict) -> None:
        """Take a prune/cluster fine-tune made elsewhere (its saved .keras and `phase` lineage) as if made here, so
        a pqat/cqat with the same settings starts from it instead of training it again."""
        from edgeport.train.tf import load_keras_model

        with self.dist.scope():
            self._memo[memo_key(cfg)] = (load_keras_model(model_path), lineage)

    # -- fine-tuning

    def _steps(self, cfg: CompressConfig) -> int:
        batch = self.dist.global_batch(cfg.batch_size)
        return max(1, round(cfg.epochs * math.ceil(len(self.data.train_images) / batch)))

    def _fine_tune(self, model, cfg: CompressConfig, callbacks=()) -> int:
        """Adam with cosine decay over `_steps(cfg)` batches drawn (shuffled, with wrap-around) from the train split;
        batch and learning rate scaled to the strategy's replicas."""
        keras = self.keras
        keras.utils.set_random_seed(cfg.seed)
        steps = self._steps(cfg)
        batch, learning_rate = self.dist.global_batch(cfg.batch_size), self.dist.learning_rate(cfg.learning_rate)
        n = len(self.data.train_images)
        rng = np.random.default_rng(cfg.seed)
        order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(steps * batch / n))])
        idx = order[: steps * batch]
        model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        print(f"compress {cfg.method.value}: fine-tune {steps} steps of {batch}", file=sys.stderr)
        train = np.asarray(self.data.train_images)  # an image folder's split decodes once, then stays in memory
        model.fit(self.spec.normalise(train[idx]), self.data.train_labels[idx],
                  batch_size=batch, epochs=1, shuffle=False, callbacks=list(callbacks), verbose=self.verbose)
        return steps

    def _probs(self, model) -> np.ndarray:
        """The fine-tuned model's test-set probabilities: what its converted files are compared with."""
        from edgeport.train.fit import predict_probs

        return predict_probs(model, self.spec, self.data.test_images)

    def _copy(self, model):
        """An independent copy with the same weights, so fine-tuning never touches the trained (or memoised) model."""
        copy = self.keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        return copy

    def _wrapped_copy(self, select, wrap):
        """A copy of the base model whose layers accepted by `select` are wrapped (tfmot wrappers read the layer's
        trained weights, so they wrap the copy's built layers rather than fresh ones)."""
        fresh = self._copy(self.base)
        chosen = sorted(layer.name for layer in fresh.layers if select(layer))
        model = self.keras.models.clone_model(
            fresh, clone_function=lambda layer: wrap(layer) if layer.name in chosen else layer)
        return model, chosen

    # -- pruning

    def _prune(self, cfg: CompressConfig) -> tuple[object, dict]:
        sp = self.tfmot.sparsity.keras
        steps = self._steps(cfg)
        schedule = pruning_schedule(steps, cfg.sparsity)
        policy = sp.PolynomialDecay(initial_sparsity=0.0, final_sparsity=cfg.sparsity, begin_step=0,
                                    end_step=schedule["end_step"], frequency=schedule["frequency"])
        chosen, skipped = layers_to_prune(self.base, cfg.min_weights)
        chosen = {layer.name for layer in chosen}
        model, names = self._wrapped_copy(lambda layer: layer.name in chosen,
                                          lambda layer: sp.prune_low_magnitude(layer, pruning_schedule=policy))
        self._fine_tune(model, cfg, [sp.UpdatePruningStep()])
        model = sp.strip_pruning(model)
        stats = kernel_stats(model, names)
        missed = {n: s["sparsity"] for n, s in stats["layers"].items()
                  if n in names and s["sparsity"] < cfg.sparsity - cfg.tolerance}
        if missed:
            raise ExportError(f"prune: target sparsity {cfg.sparsity:.0%} missed by more than {cfg.tolerance:.0%} "
                              f"in {', '.join(f'{n} ({v:.1%})' for n, v in missed.items())}")
        return model, {"method": "prune", "settings": cfg.settings(), "schedule": {"kind": "polynomial_decay",
                       "steps": steps, **schedule}, "pruned_layers": names, "skipped_layers": skipped,
                       "target_sparsity": cfg.sparsity, **stats}

    def _prune_2_4(self, cfg: CompressConfig) -> tuple[object, dict]:
        sp = self.tfmot.sparsity.keras
        qualify, skipped = layers_2_4(self.base)
        names = {layer.name for layer in qualify}
        steps = self._steps(cfg)
        frequency = max(1, steps // 16)  # refresh the 2:4 mask ~16 times; it is applied on every step
        policy = sp.ConstantSparsity(0.5, begin_step=0, frequency=frequency)
        model, names = self._wrapped_copy(lambda layer: layer.name in names, lambda layer: sp.prune_low_magnitude(
            layer, pruning_schedule=policy, sparsity_m_by_n=(2, 4)))
        self._fine_tune(model, cfg, [sp.UpdatePruningStep()])
        model = sp.strip_pruning(model)
        broken = [layer.name for layer in model.layers if layer.name in names and not holds_2_4(_kernel(layer))]
        if broken:
            raise ExportError(f"sparse_2_4: the 2:4 pattern does not hold in {', '.join(broken)} after fine-tuning")
        for name in skipped:
            print(f"compress sparse_2_4: skipped {name}: {skipped[name]}", file=sys.stderr)
        return model, {"method": "sparse_2_4", "settings": cfg.settings(), "pattern": "2:4 along input channels",
                       "schedule": {"kind": "constant_sparsity", "steps": steps, "frequency": frequency},
                       "pruned_layers": names, "skipped_layers": skipped, "target_sparsity": 0.5,
                       **kernel_stats(model, names)}

    # -- clustering

    def _cluster(self, cfg: CompressConfig) -> tuple[object, dict]:
        cl = self.tfmot.clustering.keras

        chosen, skipped = layers_to_cluster(self.base, cfg.clusters)
        chosen = {layer.name for layer in chosen}
        init = cl.CentroidInitialization.KMEANS_PLUS_PLUS
        model, names = self._wrapped_copy(lambda layer: layer.name in chosen, lambda layer: cl.cluster_weights(
            layer, number_of_clusters=cfg.clusters, cluster_centroids_init=init))
        self._fine_tune(model, cfg)
        model = cl.strip_clustering(model)
        stats = kernel_stats(model, names)
        over = {n: s["unique"] for n, s in stats["layers"].items() if n in names and s["unique"] > cfg.clusters}
        if over:
            raise ExportError(f"cluster: more than {cfg.clusters} distinct values remain in "
                              f"{', '.join(f'{n} ({v})' for n, v in over.items())}")
        return model, {"method": "cluster", "settings": cfg.settings(), "centroid_init": "kmeans++",
                       "clustered_layers": names, "skipped_layers": skipped, **stats}

    # -- quantisation-aware training

    def _qat(self, base, cfg: CompressConfig) -> tuple[object, dict]:
        model = quantize(self._copy(base), cfg.method)
        steps = self._fine_tune(model, cfg)
        return model, {"method": cfg.method.value, "settings": cfg.settings(), "scheme": SCHEMES[cfg.method],
                       "steps": steps, **kernel_stats(model), "_start": base}

    def _check_preserved(self, cfg: CompressConfig, before: dict, after: dict) -> None:
        names = before.get("pruned_layers") or before.get("clustered_layers") or []
        after_layers = after["layers"]
        if cfg.method is Method.PQAT:
            zeros = sum(after_layers[n]["zeros"] for n in names)
            total = sum(after_layers[n]["weights"] for n in names)
            after["overall_sparsity"] = round(zeros / total, 4)
            after["counted_layers"] = names
            if after["overall_sparsity"] < cfg.sparsity - cfg.tolerance:
                raise ExportError(f"pqat: sparsity fell to {after['overall_sparsity']:.1%} during QAT "
                                  f"(target {cfg.sparsity:.0%})")
        else:  # cqat: tfmot may re-cluster a conv kernel per output channel, so count per channel
            over = {n: after_layers[n]["unique_per_channel_max"] for n in names
                    if after_layers[n]["unique_per_channel_max"] > cfg.clusters}
            if over:
                raise ExportError(f"cqat: more than {cfg.clusters} distinct values per channel after QAT in "
                                  f"{', '.join(f'{n} ({v})' for n, v in over.items())}")


def memo_key(cfg: CompressConfig) -> tuple:
    """What makes two fine-tunes the same one: the method and every setting it trains with."""
    return (cfg.method, cfg.sparsity, cfg.min_weights, cfg.clusters, cfg.epochs, cfg.learning_rate, cfg.batch_size,
            cfg.seed)


def first_phase(cfg: CompressConfig) -> CompressConfig | None:
    """The fine-tune pqat/cqat start from (prune/cluster with the same settings); None for the other methods."""
    first = {Method.PQAT: Method.PRUNE, Method.CQAT: Method.CLUSTER}.get(cfg.method)
    return None if first is None else replace(cfg, method=first)


def fold_dense_batchnorm(model, x) -> tuple[object, list[str]]:
    """Fold each BatchNormalization that follows a linear Dense into that Dense's kernel and bias, and a plain ReLU
    right after it into the Dense's activation; return the new model and the layers folded away. Inference is
    unchanged (checked on `x`, model input).

    Why: tfmot's QAT wraps Dense+BN so that the TFLite converter folds the BN after the fake-quantised kernel,
    and the folded kernel is then stored as float32 (measured: a 1.6 MB "int8" file whose 400k-weight FC ran in
    float). And with the ReLU left as its own layer, Default8BitPrunePreserveQuantizeScheme does not preserve the
    Dense's zeros (measured: 80% -> 6% in one epoch of PQAT); as Dense(activation="relu") it does. Conv+BN is left
    alone: tfmot folds it properly. Only Sequential models are rewritten; others are returned unchanged.
    """
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    layers = model.layers
    if not isinstance(model, keras.Sequential):
        return model, []
    plan, folded, i = [], [], 0
    while i < len(layers):
        layer, nxt = layers[i], layers[i + 1] if i + 1 < len(layers) else None
        if (type(layer).__name__ == "Dense" and type(nxt).__name__ == "BatchNormalization"
                and layer.get_config().get("activation") == "linear" and nxt.axis in ([-1], -1, [1])):
            kernel = layer.kernel.numpy()
            bias = layer.bias.numpy() if layer.use_bias else np.zeros(kernel.shape[-1], kernel.dtype)
            gamma = nxt.gamma.numpy() if nxt.gamma is not None else 1.0
            beta = nxt.beta.numpy() if nxt.beta is not None else 0.0
            scale = gamma / np.sqrt(nxt.moving_variance.numpy() + nxt.epsilon)
            weights = [kernel * scale, (bias - nxt.moving_mean.numpy()) * scale + beta]
            after = layers[i + 2] if i + 2 < len(layers) else None
            relu = type(after).__name__ == "ReLU" and after.max_value is None and not float(after.negative_slope) \
                and not float(after.threshold)
            config = layer.get_config() | {"use_bias": True, "activation": "relu" if relu else "linear"}
            plan.append((keras.layers.Dense.from_config(config), weights))
            folded += [nxt.name] + ([after.name] if relu else [])
            i += 3 if relu else 2
        else:
            plan.append((layer.__class__.from_config(layer.get_config()), layer.get_weights()))
            i += 1
    if not folded:
        return model, []
    out = keras.Sequential([keras.Input(model.input_shape[1:], name=model.input_names[0]), *(p for p, _ in plan)],
                           name=model.name)
    for new, weights in plan:
        new.set_weights(weights)
    diff = float(np.abs(out.predict(x, verbose=0) - model.predict(x, verbose=0)).max())
    if diff > 1e-4:
        raise ExportError(f"folding {', '.join(folded)} into their Dense layers changed the outputs by {diff:.1e}")
    return out, folded


def pruning_schedule(steps: int, sparsity: float) -> dict:
    """Begin/end/frequency for a polynomial ramp from 0 to `sparsity` sized to a `steps`-long fine-tune.

    The ramp covers the first 70% of the steps (the rest recovers accuracy at the final sparsity) in about 16
    pruning events. tfmot's default frequency of 100 steps would prune nothing in a short run, and the end step
    must fall on a pruning event or the final sparsity is never reached.
    """
    ramp = max(1, int(steps * 0.7))
    frequency = max(1, ramp // 16)
    end_step = max(frequency, (ramp // frequency) * frequency)
    return {"begin_step": 0, "end_step": end_step, "frequency": frequency, "final_sparsity": sparsity}


SCHEMES = {Method.QAT: "Default8BitQuantizeScheme", Method.PQAT: "Default8BitPrunePreserveQuantizeScheme",
           Method.CQAT: "Default8BitClusterPreserveQuantizeScheme"}
QAT_SUFFIX, START_SUFFIX = ".qat.h5", ".start.keras"


def quantize(model, method: Method):
    """Wrap a float model for QAT with the scheme `method` calls for (the model is not modified)."""
    import tensorflow_model_optimization as tfmot

    q = tfmot.quantization.keras
    scheme = {Method.PQAT: tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme,
              Method.CQAT: lambda: tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
                  preserve_sparsity=False)}.get(method, tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme)
    with q.quantize_scope():
        return q.quantize_apply(q.quantize_annotate_model(model), scheme())


def model_suffix(method: Method) -> str:
    return QAT_SUFFIX if method in QUANTISED else ".keras"


def save_qat(model, start_model, method: Method, path: Path) -> None:
    """Save a QAT model as <name>.start.keras (the float model QAT began from, safe-mode loadable) plus
    <name>.qat.h5 (the trained weights, tagged with the method), written last.

    Why not model.save: tf-keras' .keras loader builds tfmot's QuantizeLayer twice and rejects its own file
    ("expected 5 variables, received 3"), and a cluster-preserving QAT model cannot be rebuilt from its config
    alone (its variables depend on the kernel being clustered). Re-applying the same scheme to the start model
    and loading the weights rebuilds it exactly, with no custom objects and no code from the file.
    """
    import h5py

    start = path.with_name(path.name[: -len(QAT_SUFFIX)] + START_SUFFIX)
    with files.atomic_path(start) as tmp:
        start_model.save(tmp)
    with files.atomic_path(path) as tmp:
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs["edgeport_qat_method"] = method.value
            f.attrs["edgeport_start_model"] = start.name


def load_model(path: str | Path):
    """Load a model written by the train or compress stage: .keras in safe mode, or a QAT pair (see `save_qat`); or
    an imported reference the Keras 3 bridge did not rebuild (a Keras 3 .keras, a SavedModel folder)."""
    from edgeport.train.tf import import_tf, load_keras_model

    p = Path(path)
    if not p.name.endswith(QAT_SUFFIX):
        if p.is_dir() or _keras3_file(p):  # an imported reference kept as it is (train/bring.py)
            from edgeport.train.bring import load_any

            return load_any(p)
        return load_keras_model(p)
    if not p.is_file():
        raise ModelFileError(f"{p}: QAT weights file not found")
    import_tf()
    try:
        import h5py

        with h5py.File(p, "r") as f:
            method = Method(str(f.attrs["edgeport_qat_method"]))
            start = p.with_name(str(f.attrs["edgeport_start_model"]))
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"{p}: not an edgeport QAT weights file ({exc})") from None
    model = quantize(load_keras_model(start), method)
    try:
        model.load_weights(p)
    except Exception as exc:  # Keras raises many types for mismatched weights; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{p}: weights do not fit {start.name} under {method.value} ({first[:200]})") from None
    return model


def _keras3_file(path: Path) -> bool:
    from edgeport.train.bring import model_format

    try:
        return path.suffix == ".keras" and path.is_file() and model_format(path) == "keras3"
    except ModelFileError:
        return False  # load_keras_model says what is wrong with it
