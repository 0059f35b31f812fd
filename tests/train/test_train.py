import json

import numpy as np
import pytest

from edgeport.core.data import DataConfig
from edgeport.core.errors import ConfigError

pytest.importorskip("tensorflow")


def test_unknown_model_name_lists_valid_ones():
    from edgeport.train.models import build_model

    with pytest.raises(ConfigError, match="expected one of: default, mobilenet_v2, seed, tiny"):
        build_model("resnet9000")


@pytest.mark.parametrize("name", ["seed", "default", "tiny", "mobilenet_v2"])
def test_every_registered_model_outputs_probabilities(name):
    from edgeport.train.models import build_model

    model = build_model(name, (28, 28, 1), 10)
    out = model(np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32), training=False).numpy()
    assert out.shape == (2, 10)
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_training_writes_every_output(tiny_run):
    for name in ("model.keras", "history.json", "curves.png", "reference.npz", "train.json"):
        assert (tiny_run / name).is_file(), name
    assert (tiny_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((tiny_run / "history.json").read_text())
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    info = json.loads((tiny_run / "train.json").read_text())
    assert info["test_accuracy"] > 0.5  # one epoch on 2k images: far above chance (0.1)
    assert info["dataset"]["source"] == "bundled MNIST" and info["dataset"]["test"] == 300
    with np.load(tiny_run / "reference.npz", allow_pickle=False) as z:
        assert z["probs"].shape == (300, 10)
    assert not list(tiny_run.glob(".*partial*")), "temporary files left behind"


def test_training_is_reproducible_with_a_seed(tmp_path):
    from edgeport.train.fit import TrainConfig, train

    cfg = TrainConfig(model="tiny", epochs=1, seed=3, data=DataConfig(train_limit=600, val_size=100, test_limit=50))
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    assert a.test_accuracy == b.test_accuracy
    with np.load(tmp_path / "a" / "reference.npz") as za, np.load(tmp_path / "b" / "reference.npz") as zb:
        assert np.allclose(za["probs"], zb["probs"], atol=1e-5)


def test_bad_training_settings():
    from edgeport.train.fit import TrainConfig

    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0).validate()
