"""Train a registered model on a dataset (edgeport.core.data) and write the training stage's outputs into a run folder.

Outputs (each written atomically): model.keras, history.json, curves.png, reference.npz (the Keras
model's test-set probabilities, so the TF-free runtime can measure agreement) and train.json (config,
dataset fingerprint, accuracy, package versions).
Training runs under a tf.distribute strategy (train/distribute.py); train.json's `distribution` records it with
its replicas, global batch and learning rate. Under multi-worker training only the chief writes `out_dir`; the
other workers run the same steps into a temporary folder that is removed (TensorFlow's pattern: every worker
must take part in saving).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeport.core import files
from edgeport.core.data import DataConfig, Dataset, load_dataset
from edgeport.core.environment import package_versions
from edgeport.core.errors import ConfigError
from edgeport.core.run import DEFAULT_MODEL, TRAIN_RECORD, RunFolder, data_record


@dataclass(frozen=True)
class TrainConfig:
    model: str = "default"  # a name from edgeport.train.models.MODELS
    epochs: int = 10  # the default model, with augment_shift, passes 99.5% MNIST test accuracy (seeds 0-2)
    batch_size: int = 128
    learning_rate: float = 2e-3  # Adam, cosine-decayed to 0 over the run
    seed: int = 0  # seeds Python, numpy and TensorFlow
    data: DataConfig = field(default_factory=DataConfig)  # which dataset and split; default: the bundled MNIST
    strategy: str = "auto"  # tf.distribute: auto | mirrored | multi-worker | none (train/distribute.py)
    augment_shift: int = 2  # each epoch, move every training image by up to N pixels (train/augment.py); 0: off

    def validate(self) -> None:
        from edgeport.train.distribute import check_strategy

        check_strategy(self.strategy)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        self.data.validate()
        if not (isinstance(self.augment_shift, int) and self.augment_shift >= 0):
            raise ConfigError(f"augment_shift must be a whole number of pixels >= 0, got {self.augment_shift!r}")


@dataclass(frozen=True)
class TrainResult:
    model_path: Path
    test_accuracy: float
    val_accuracy: float
    seconds: float
    chief: bool = True  # False: a multi-worker worker whose outputs were temporary (the chief writes the run)


def dataset_for(cfg: TrainConfig) -> Dataset:
    return load_dataset(cfg.data)


def predict_probs(model, spec, images, chunk: int = 8192) -> np.ndarray:
    """float32 probabilities of a Keras model on a split's uint8 images, `chunk` images at a time, so a lazy image
    folder's test split is decoded and normalised in pieces, never all at once."""
    from edgeport.core.data import iter_batches

    outs = [model.predict(spec.normalise(b), batch_size=512, verbose=0) for b in iter_batches(images, chunk)]
    return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, model.output_shape[-1]), np.float32)


def train(cfg: TrainConfig, out_dir: str | Path) -> TrainResult:
    """Train `cfg.model` and write the run folder's training outputs; returns accuracy and paths."""
    from edgeport.train.distribute import distribution, output_dir

    cfg.validate()
    dist = distribution(cfg.strategy)
    with output_dir(dist, out_dir) as out:  # a multi-worker non-chief: a temporary copy
        result = _train(cfg, files.ensure_writable_dir(out), dist)
    return replace(result, chief=dist.chief)


def _train(cfg: TrainConfig, out: Path, dist) -> TrainResult:
    from edgeport.train.augment import random_shift
    from edgeport.train.models import build_model
    from edgeport.train.tf import import_tf

    tf, keras = import_tf()
    data = dataset_for(cfg)
    spec = data.spec
    if not len(data.train_images):
        raise ConfigError(f"{data.source}: has no training images; training needs x_train/y_train or a train split")
    for note in data.notes:
        print(f"data: {note}", file=sys.stderr)
    keras.utils.set_random_seed(cfg.seed)
    batch, learning_rate = dist.global_batch(cfg.batch_size), dist.learning_rate(cfg.learning_rate)
    with dist.scope():  # variables are created per replica
        model = build_model(cfg.model, spec.image_shape, data.num_classes)
        steps = cfg.epochs * int(np.ceil(len(data.train_images) / batch))
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    train_images = np.asarray(data.train_images)  # Keras fits from memory (a lazy image folder decodes here, once)
    x_val = spec.normalise(data.val_images)
    start = time.perf_counter()
    validation = (x_val, data.val_labels) if len(x_val) else None
    rng = np.random.default_rng(cfg.seed)
    history: dict[str, list[float]] = {}
    for epoch in range(cfg.epochs):  # one fit call an epoch: each sees freshly shifted images
        hist = model.fit(
            spec.normalise(random_shift(train_images, cfg.augment_shift, rng)),
            data.train_labels,
            batch_size=batch,
            epochs=epoch + 1,
            initial_epoch=epoch,
            validation_data=validation,
            verbose=1 if sys.stdout.isatty() else 2,  # a live bar on a terminal, one line an epoch in logs
        )
        for k, vals in hist.history.items():
            history.setdefault(k, []).extend(float(v) for v in vals)
    seconds = time.perf_counter() - start
    probs = predict_probs(model, spec, data.test_images)
    test_acc = float((probs.argmax(1) == data.test_labels).mean())
    val_acc = history.get("val_accuracy", [float("nan")])[-1]

    run = RunFolder(out)
    model_path = out / DEFAULT_MODEL
    with files.atomic_path(model_path) as tmp:
        model.save(tmp)
    run.write_reference(probs, data.test_labels)
    files.write_json(out / "history.json", history)
    plot_history(history, out / "curves.png", title=f"{cfg.model} on {data.source}")
    files.write_json(
        out / TRAIN_RECORD,
        {
            "origin": "trained",
            "config": {k: v for k, v in asdict(cfg).items() if k != "data"},
            **data_record(cfg.data, data, out),
            "input_spec": spec.to_dict(),
            "model_name": cfg.model,
            "params": int(model.count_params()),
            "distribution": dist.record(cfg.batch_size, cfg.learning_rate),
            "test_accuracy": test_acc,
            "val_accuracy": val_acc,
            "train_seconds": round(seconds, 2),
            "model_path": model_path.name,
            "model_sha256": files.sha256_file(model_path),
            "packages": package_versions(),
        },
    )
    return TrainResult(model_path, test_acc, val_acc, seconds)


def plot_history(history: dict[str, list[float]], path: Path, title: str = "") -> None:
    """Loss and accuracy curves, train and validation, side by side."""
    # A bare Figure, not pyplot: no backend switch (matplotlib.use("Agg") would break plots in a notebook
    # that calls train), and nothing left in pyplot's figure list.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
