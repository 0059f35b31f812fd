"""--strategy: TF_CONFIG checks, the record in train.json and the compress lineage, MirroredStrategy over two
logical CPUs and MultiWorkerMirroredStrategy over two processes on loopback (no GPU needed for either)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgeport.core.errors import ConfigError
from edgeport.train.distribute import check_strategy, read_tf_config

GOOD = {"cluster": {"worker": ["127.0.0.1:1234", "127.0.0.1:1235"]}, "task": {"type": "worker", "index": 1}}


@pytest.mark.parametrize("value, match", [
    ("{not json", r"TF_CONFIG is not valid JSON \(Expecting property name enclosed in double quotes at character 1\): "
                  r"'\{not json'"),
    ("[]", "TF_CONFIG needs a 'cluster' and a 'task' object"),
    (json.dumps({"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}),
     r"cluster.worker must be a list of 'host:port' strings"),
    (json.dumps({**GOOD, "task": {"type": "ps", "index": 0}}), r"task.type 'ps' is not a role in cluster \(worker\)"),
    (json.dumps({**GOOD, "task": {"type": "worker", "index": 2}}), r"task.index must be 0..1 for 'worker', got 2"),
])
def test_bad_tf_config_is_named(monkeypatch, value, match):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ConfigError, match=match):
        read_tf_config()


def test_strategy_names_and_tf_config_presence(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="unknown strategy 'fast'; expected one of: auto, mirrored, multi-worker"):
        check_strategy("fast")
    with pytest.raises(ConfigError, match="--strategy multi-worker needs TF_CONFIG"):
        check_strategy("multi-worker")
    assert check_strategy("auto").value == "auto"  # auto never reads TF_CONFIG
    monkeypatch.setenv("TF_CONFIG", json.dumps(GOOD))
    assert read_tf_config()["task"]["index"] == 1


@pytest.mark.parametrize("command", ["train", "run"])
def test_cli_bad_tf_config_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys, command):
    from edgeport.cli import main

    monkeypatch.setenv("TF_CONFIG", "{not json")
    out = tmp_path / "run"
    assert main([command, "--out", str(out), "--strategy", "multi-worker"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("edgeport: error: TF_CONFIG is not valid JSON") and "'{not json'" in line
    assert not out.exists()


def test_default_strategy_records_one_replica_and_stays_reproducible(tiny_run, tmp_path):
    """On a CPU, auto is the default strategy: one replica, batch and learning rate as given, and a second seeded
    training under --strategy none gives the same predictions."""
    from edgeport.core.data import DataConfig
    from edgeport.train.fit import TrainConfig, train

    info = json.loads((tiny_run / "train.json").read_text())
    dist = info["distribution"]
    assert (dist["strategy"], dist["requested"], dist["replicas"], dist["workers"]) == ("none", "auto", 1, 1)
    assert dist["global_batch"] == dist["per_replica_batch"] == info["config"]["batch_size"]
    assert dist["learning_rate"] == dist["base_learning_rate"] and dist["gpus"] == []
    train(TrainConfig(**{**info["config"], "strategy": "none"}, data=DataConfig.from_dict(info["data"])), tmp_path)
    with np.load(tiny_run / "reference.npz") as a, np.load(tmp_path / "reference.npz") as b:
        np.testing.assert_array_equal(a["probs"].argmax(1), b["probs"].argmax(1))
        np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-5)


def test_mirrored_over_two_logical_cpus_trains_and_fine_tunes(tmp_path):
    """Two replicas without a GPU: the CPU split into two logical devices (before TensorFlow starts, so in a
    child process). The global batch and the learning rate double; a prune and a QAT fine-tune run under it."""
    code = textwrap.dedent(f"""
        import json, os
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from edgeport.core.data import DataConfig
        from edgeport.export.export import ExportConfig, export_run
        from edgeport.export.recipe import parse_recipe
        from edgeport.train.fit import TrainConfig, train
        out = {str(tmp_path)!r}
        train(TrainConfig(model="tiny", epochs=1, batch_size=32, strategy="mirrored",
                          data=DataConfig(train_limit=1200, val_size=200, test_limit=200)), out)
        recipe = parse_recipe({{"settings": {{"epochs": 0.5, "batch_size": 32}}, "variant": [
            {{"method": "prune", "targets": ["tflite_fp32"]}}, {{"method": "qat", "targets": ["tflite_int8"]}}]}})
        export_run(out, ExportConfig(calibration_size=16, validation_size=16), recipe=recipe, strategy="mirrored")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    dist = json.loads((tmp_path / "train.json").read_text())["distribution"]
    assert (dist["strategy"], dist["replicas"], dist["global_batch"]) == ("mirrored", 2, 64)
    assert dist["learning_rate"] == pytest.approx(2 * dist["base_learning_rate"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [a["name"] for a in manifest["artifacts"]] == ["prune_tflite_fp32", "qat_tflite_int8"]
    for a in manifest["artifacts"]:
        d = a["lineage"]["training"]["distribution"]
        assert (d["strategy"], d["replicas"], d["global_batch"], d["learning_rate"]) == ("mirrored", 2, 64, 1e-3)


def test_multi_worker_over_two_processes_on_loopback(tmp_path):
    """`edgeport train --strategy multi-worker` in two processes with one TF_CONFIG cluster: both train in sync, only
    the chief (worker 0) writes its folder."""
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = os.environ | {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "edgeport.cli", "train", "--out", str(tmp_path / f"w{i}"), "--strategy",
             "multi-worker", "--model", "tiny", "--epochs", "1", "--train-limit", "1200", "--val-size", "200",
             "--test-limit", "200", "--batch-size", "32"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert "the chief writes the run folder" in outs[1][0]
    dist = json.loads((tmp_path / "w0" / "train.json").read_text())["distribution"]
    assert (dist["strategy"], dist["workers"], dist["replicas"], dist["global_batch"]) == ("multi-worker", 2, 2, 64)
    assert list((tmp_path / "w1").iterdir()) == []  # the other worker's outputs were temporary
