"""tf.distribute for training and fine-tunes: pick the strategy, scale batch and learning rate, record both.

    none          TensorFlow's default strategy: one device, a GPU when TensorFlow sees one, else the CPU
    mirrored      MirroredStrategy: one replica per visible GPU (without a GPU, per logical CPU device: one unless
                  configured), gradients all-reduced every step
    multi-worker  MultiWorkerMirroredStrategy over the machines TF_CONFIG names; run the same command on each,
                  the chief (task "chief", or worker 0) writes the run folder, the others a temporary one
    auto          mirrored when more than one GPU is visible, else none

A batch size the user gives is per replica. The global batch is that times the replica count and the learning
rate is scaled by the same factor (the linear scaling rule of Goyal et al., "Accurate, Large Minibatch SGD"),
so one replica changes nothing: a seeded run on one device is the run it always was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from edgeport.core.errors import ConfigError


class Strategy(str, Enum):
    AUTO = "auto"
    MIRRORED = "mirrored"
    MULTI_WORKER = "multi-worker"
    NONE = "none"


STRATEGIES = tuple(s.value for s in Strategy)


def parse_strategy(value: str | Strategy) -> Strategy:
    try:
        return Strategy(value)
    except ValueError:
        raise ConfigError(f"unknown strategy {value!r}; expected one of: {', '.join(STRATEGIES)}") from None


def read_tf_config(required: bool = True) -> dict | None:
    """TF_CONFIG parsed and checked (cluster.worker addresses, task type and index), or None when unset and not
    `required`. TensorFlow's own resolver fails on a bad one with a traceback from deep inside; this names it."""
    raw = os.environ.get("TF_CONFIG")
    if raw is None or not raw.strip():
        if required:
            raise ConfigError("--strategy multi-worker needs TF_CONFIG, e.g. "
                              '\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                              '"task": {"type": "worker", "index": 0}}\'')
        return None
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc.msg} at character {exc.pos}): {raw!r}") from None
    cluster = cfg.get("cluster") if isinstance(cfg, dict) else None
    task = cfg.get("task") if isinstance(cfg, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError(f"TF_CONFIG needs a 'cluster' and a 'task' object, got {raw!r}")
    for role, addresses in cluster.items():
        if not (isinstance(addresses, list) and addresses and all(isinstance(a, str) and ":" in a for a in addresses)):
            raise ConfigError(f"TF_CONFIG cluster.{role} must be a list of 'host:port' strings, got {addresses!r}")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise ConfigError(f"TF_CONFIG task.type {kind!r} is not a role in cluster ({', '.join(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise ConfigError(f"TF_CONFIG task.index must be 0..{len(cluster[kind]) - 1} for {kind!r}, got {index!r}")
    return cfg


def check_strategy(value: str | Strategy) -> Strategy:
    """The cheap checks, without TensorFlow: a known name, and a usable TF_CONFIG for multi-worker. Callers run it
    before writing anything."""
    strategy = parse_strategy(value)
    if strategy is Strategy.MULTI_WORKER:
        read_tf_config(required=True)
    return strategy


@dataclass(frozen=True)
class Distribution:
    """The strategy in use and what it means for the batch and learning rate."""

    strategy: object  # a tf.distribute.Strategy: build and compile models inside `scope()`
    name: str  # what ran: none | mirrored | multi-worker
    requested: str  # what was asked for (auto resolves to one of the above)
    replicas: int  # replicas in sync, over every worker
    devices: tuple[str, ...]  # this worker's replica devices
    gpus: tuple[str, ...]  # GPUs TensorFlow sees on this machine (used when present)
    workers: int  # machines taking part (multi-worker), else 1
    chief: bool  # this process writes the outputs

    def scope(self):
        return self.strategy.scope()

    def global_batch(self, batch_size: int) -> int:
        return batch_size * self.replicas

    def learning_rate(self, learning_rate: float) -> float:
        return learning_rate * self.replicas

    def record(self, batch_size: int, learning_rate: float) -> dict:
        """For train.json and the compress lineage."""
        return {"strategy": self.name, "requested": self.requested, "replicas": self.replicas,
                "workers": self.workers, "devices": list(self.devices), "gpus": list(self.gpus),
                "per_replica_batch": batch_size, "global_batch": self.global_batch(batch_size),
                "base_learning_rate": learning_rate, "learning_rate": self.learning_rate(learning_rate),
                "scaling": "linear in replicas"}


_MADE: dict[str, Distribution] = {}  # one per process: MultiWorkerMirroredStrategy must be created once


def distribution(value: str | Strategy = Strategy.AUTO) -> Distribution:
    """Resolve `value` and create its tf.distribute strategy (once per process and choice)."""
    from edgeport.train.tf import import_tf

    requested = check_strategy(value)
    if requested.value in _MADE:
        return _MADE[requested.value]
    tf, _ = import_tf()
    gpus = tuple(d.name.replace("/physical_device:", "") for d in tf.config.list_physical_devices("GPU"))
    strategy = requested
    if strategy is Strategy.AUTO:
        strategy = Strategy.MIRRORED if len(gpus) > 1 else Strategy.NONE
    workers, chief = 1, True
    if strategy is Strategy.NONE:
        made = tf.distribute.get_strategy()
        devices = ("/gpu:0",) if gpus else ("/cpu:0",)
    elif strategy is Strategy.MIRRORED:
        devices = tuple(d.name for d in tf.config.list_logical_devices("GPU" if gpus else "CPU"))
        made = tf.distribute.MirroredStrategy(devices=list(devices))
    else:
        cfg = read_tf_config(required=True)
        made = tf.distribute.MultiWorkerMirroredStrategy()
        task = cfg["task"]
        workers = sum(len(v) for k, v in cfg["cluster"].items() if k in ("chief", "worker"))
        chief = task["type"] == "chief" or (task["type"] == "worker" and task["index"] == 0
                                            and "chief" not in cfg["cluster"])
        devices = tuple(d.name for d in tf.config.list_logical_devices("GPU")) or ("/cpu:0",)
    _MADE[requested.value] = Distribution(strategy=made, name=strategy.value, requested=requested.value,
                                          replicas=int(made.num_replicas_in_sync), devices=devices, gpus=gpus,
                                          workers=workers, chief=chief)
    return _MADE[requested.value]


_SCRATCH: set[Path] = set()  # this process's worker folders (so a nested call does not redirect twice)


@contextlib.contextmanager
def output_dir(dist: Distribution, out: str | Path) -> Iterator[Path]:
    """Where this process writes: `out` on the chief; on another multi-worker worker a temporary folder, removed
    afterwards (TensorFlow's pattern: every worker takes part in saving, only the chief's copy is kept)."""
    out = Path(out)
    if dist.chief or out in _SCRATCH:
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="edgeport-worker-") as scratch:
        path = Path(scratch)
        _SCRATCH.add(path)
        try:
            yield path
        finally:
            _SCRATCH.discard(path)
