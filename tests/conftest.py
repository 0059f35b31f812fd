"""Shared fixtures: one tiny model trained and exported once per session, on a small MNIST subset."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# Small but real: ~2k images, one epoch of the tiny CNN. Enough for int8 calibration and agreement checks.
TINY_DATA = dict(train_limit=2500, val_size=500, test_limit=300)
# No random shifts (augment_shift=0) in these one- or two-epoch fixtures: shifts slow the first epoch, and a barely
# trained model's near-ties make the int8 files' agreement gate flaky. tests/train covers the shifted training.
TINY_TRAIN = dict(model="tiny", epochs=1, batch_size=64, augment_shift=0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder with model.keras, reference.npz, train.json and the default exports + manifest."""
    return _trained_run(tmp_path_factory, "tiny_run", TINY_TRAIN, TINY_DATA, calibration_size=64, validation_size=64)


def _trained_run(tmp_path_factory, name: str, train_kwargs: dict, data_kwargs: dict, **export_kwargs) -> Path:
    """Train with `train_kwargs` on `data_kwargs` into a fresh temp folder, then export it with `export_kwargs`."""
    pytest.importorskip("tensorflow")
    from edgeport.core.data import DataConfig
    from edgeport.export.export import ExportConfig, export_run
    from edgeport.train.fit import TrainConfig, train

    run = tmp_path_factory.mktemp(name)
    train(TrainConfig(**train_kwargs, data=DataConfig(**data_kwargs)), run)
    export_run(run, ExportConfig(**export_kwargs))
    return run


@pytest.fixture(scope="session")
def artifacts(tiny_run) -> dict[str, Path]:
    """name -> path of every artifact in the tiny run's manifest."""
    from edgeport.core.manifest import read_manifest

    return {a["name"]: tiny_run / a["path"] for a in read_manifest(tiny_run)["artifacts"]}


@pytest.fixture(scope="session")
def mnist_test():
    """(uint8 images, labels): the first 300 bundled MNIST test images."""
    from edgeport.core.data import load_dataset

    d = load_dataset(test_limit=300, train_limit=1000, val_size=100)
    return d.test_images, d.test_labels


# A small but accurate model (~98% on MNIST) for tests whose assertions need right answers, e.g. that
# `edgeport predict` reads every sample image in examples/ correctly: the seed CNN, 2 epochs on 10k images.
SEED_DATA = dict(train_limit=10000, val_size=500, test_limit=500)
SEED_TRAIN = dict(model="seed", epochs=2, batch_size=64, augment_shift=0)


@pytest.fixture(scope="session")
def seed_run(tmp_path_factory) -> Path:
    """A run folder with the seed model exported to tflite_fp32, tflite_int8 and onnx_fp32."""
    return _trained_run(tmp_path_factory, "seed_run", SEED_TRAIN, SEED_DATA,
                        targets=("tflite_fp32", "tflite_int8", "onnx_fp32"), calibration_size=200, validation_size=128)
