"""RunFolder: the one way stages open a run folder."""

import json

import numpy as np
import pytest

from edgeport.core.data import DataConfig, load_dataset
from edgeport.core.errors import OutputError
from edgeport.core.run import RunFolder


def _npz(path, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, x_train=rng.integers(0, 256, (20, 6, 6), dtype=np.uint8), y_train=np.arange(20) % 2,
             x_test=rng.integers(0, 256, (8, 6, 6), dtype=np.uint8), y_test=np.arange(8) % 2)


def _record(run, data_path):
    data = load_dataset(DataConfig(path=str(data_path)))
    (run / "train.json").write_text(json.dumps({"data": DataConfig(path=str(data_path)).to_dict(),
                                                "input_spec": data.spec.to_dict(), "dataset": data.fingerprint(),
                                                "model_name": "tiny"}))
    return data


def test_reads_data_spec_and_reference(tmp_path):
    _npz(tmp_path / "d.npz")
    data = _record(tmp_path, tmp_path / "d.npz")
    run = RunFolder(tmp_path)
    assert run.spec == data.spec and run.model_name == "tiny" and run.model_path.name == "model.keras"
    assert run.dataset() is run.dataset() and run.dataset().notes == ()
    assert run.reference() is None
    run.write_reference(np.full((8, 2), 0.5), data.test_labels)
    assert run.reference(data.test_labels).shape == (8, 2)
    with pytest.raises(OutputError, match="different test set"):
        run.reference(data.test_labels[::-1])


def test_says_when_the_data_changed_since_the_run(tmp_path):
    _npz(tmp_path / "d.npz")
    _record(tmp_path, tmp_path / "d.npz")
    _npz(tmp_path / "d.npz", seed=1)  # same name, other images
    notes = RunFolder(tmp_path).dataset().notes
    assert any("the data changed since this run was made (d.npz" in n for n in notes)
