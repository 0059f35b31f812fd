"""Scale out on Ray: each recipe variant, then each artifact's evaluation, as a Ray task; benchmarks on one node.

    with connect(RayConfig(address="auto")) as ray_executor:         # or "local", or "HOST:PORT" of `ray start --head`
        run_pipeline("runs/big", recipe=load_recipe(), executor=ray_executor)

A variant task (fine-tune + its conversions + validation + file statistics, `export.recipe.make_variant`) asks for
the recipe's `num_cpus`/`num_gpus` (default 1 CPU) and returns its files as bytes with its manifest entries; the
driver stages them in the run folder and moves them in once complete, so the folder ends up exactly as a local
run writes it, manifest last. Nothing is assumed shared between machines except the dataset path in train.json
(the bundled MNIST is inside the package; a --data path must exist at the same place on every node): a task gets
the reference model and train.json and opens them as a RunFolder, which loads the data as a local run does. pqat/cqat
tasks start from the prune/cluster task's fine-tune with the same settings (passed by reference), as a local run
reuses it. Each artifact is then evaluated by its own task, and every benchmark runs in one task on one node, so
the timings in one report come from one machine (report["bench_executor"] names it).

Faults are Ray's: a task that raises or whose worker or node dies is re-run up to `max_retries` times; a variant
that still fails is reported failed with the reason and the others complete; an EdgeportError (a missed sparsity
target, a file failing validation) is the same on every attempt and is reported without retrying. Ctrl-C cancels
every outstanding task; the manifest is only written after all variants are back. Ray is imported here only:
without --ray nothing imports it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from edgeport.core import files
from edgeport.core.errors import ConfigError, EdgeportError, MissingDependencyError


@dataclass(frozen=True)
class RayConfig:
    address: str = "auto"  # "auto": RAY_ADDRESS or the cluster `ray start` began here; "local": a new one in-process;
    #                        else HOST:PORT of a head started with `ray start --head`
    max_retries: int = 2  # re-runs of a task that raised (not an EdgeportError) or whose worker or node died
    num_cpus: int | None = None  # "local" only: CPUs of the in-process cluster (None: every CPU here)
    object_store_mb: int | None = None  # "local" only: its object store (None: Ray's default)
    runtime_env: dict | None = None  # Ray runtime environment for this job's workers (env_vars, setup hook, ...)
    probe_timeout_s: float = 5.0  # how long to try a TCP connection to the address before calling it unreachable

    def validate(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"max_retries must be a whole number >= 0, got {self.max_retries!r}")


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(f"--ray needs Ray: pip install 'edgeport[scale]' ({exc})") from None
    return ray


@contextlib.contextmanager
def connect(cfg: RayConfig = RayConfig()) -> Iterator[RayExecutor]:
    """Connect to (or with "local", start) a Ray cluster for the block; one-line errors for an unreachable address
    and a Ray or Python version that differs from the cluster's. Disconnects (or stops the local one) on exit."""
    cfg.validate()
    ray = import_ray()
    address = cfg.address
    if address == "auto" and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
    if address not in ("auto", "local"):
        _probe(address, cfg.probe_timeout_s)
    local = {"num_cpus": cfg.num_cpus, "include_dashboard": False} if address == "local" else {}
    if address == "local" and cfg.object_store_mb is not None:
        local["object_store_memory"] = cfg.object_store_mb * 2**20
    try:
        ray.init(address=address, runtime_env=cfg.runtime_env, logging_level=logging.WARNING, **local)
    except Exception as exc:  # ConnectionError, RuntimeError (version mismatch), ValueError (malformed address)
        ray.shutdown()
        raise ConfigError(_connect_error(cfg.address, address, exc)) from None
    try:
        yield RayExecutor(ray, cfg, address)
    finally:
        ray.shutdown()


def _probe(address: str, timeout_s: float) -> None:
    """Fail fast on an address nobody listens at (ray.init would wait about a minute). A loopback address is also
    tried at this machine's own address, where Ray binds when told 127.0.0.1 on Linux."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379), 'auto' or 'local'")
    hosts = [host]
    if host in ("localhost", "127.0.0.1", "::1"):
        from ray.util import get_node_ip_address

        hosts.append(get_node_ip_address())
    reason = ""
    for h in hosts:
        try:
            socket.create_connection((h, int(port)), timeout=timeout_s).close()
            return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
    raise ConfigError(f"Ray address {address} is unreachable ({reason}); start a head there with "
                      f"`ray start --head --port {port}`, or check the address")


def _connect_error(given: str, address: str, exc: Exception) -> str:
    text = str(exc)
    if "Version mismatch" in text:
        found = re.findall(r"Ray: (\S+)\s+Python: (\S+)", text)
        if len(found) == 2:
            (ray_c, py_c), (ray_h, py_h) = found
            return (f"Ray version mismatch at {address}: the cluster runs Ray {ray_c} on Python {py_c}, this process "
                    f"Ray {ray_h} on Python {py_h}; install the same Ray and Python on every node and here")
    if given == "auto" and isinstance(exc, ConnectionError):
        return ("--ray auto found no running Ray cluster: RAY_ADDRESS is not set and none was started on this machine "
                "(`ray start --head`); give its HOST:PORT, or --ray local")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"could not connect to Ray at {address} ({first[:200]})"


class RayExecutor:
    """Makes recipe variants and evaluates artifacts as Ray tasks (see the module docstring)."""

    def __init__(self, ray, cfg: RayConfig, address: str):
        self.ray, self.cfg, self.address = ray, cfg, address
        self._variant = ray.remote(_variant_task)
        self._evaluate = ray.remote(_evaluate_task)
        self._bench = ray.remote(_bench_task)

    # -- what the cluster has

    def nodes(self) -> list[dict]:
        return [{"node_id": n["NodeID"], "ip": n.get("NodeManagerAddress"), "cpus": n["Resources"].get("CPU", 0),
                 "gpus": n["Resources"].get("GPU", 0)} for n in self.ray.nodes() if n.get("Alive")]

    def describe(self) -> dict:
        """For the manifest: which cluster, Ray version and nodes."""
        return {"kind": "ray", "address": self.address, "ray": self.ray.__version__, "nodes": self.nodes(),
                "max_retries": self.cfg.max_retries}

    def check(self, recipe, export_cfg=None, strategy: str = "auto", bench_cfg=None) -> None:
        """Refuse, before any work, what this cluster cannot run: a variant asking for more CPUs or GPUs than any
        one node has, and multi-worker training (one process per machine under TF_CONFIG, not a Ray task)."""
        from edgeport.train.distribute import Strategy, check_strategy

        if check_strategy(strategy) is Strategy.MULTI_WORKER:
            raise ConfigError("--strategy multi-worker runs one process per machine under TF_CONFIG; with --ray each "
                              "fine-tune is one task: use --strategy auto, mirrored or none")
        nodes = self.nodes()
        most = {"num_cpus": max((n["cpus"] for n in nodes), default=0),
                "num_gpus": max((n["gpus"] for n in nodes), default=0)}
        for v in recipe.variants if recipe is not None else ():
            for key, asked in (("num_cpus", v.num_cpus or 1), ("num_gpus", v.num_gpus or 0)):
                if asked > most[key]:
                    raise ConfigError(f"{v.label}: {key} = {asked:g}, but no node of the Ray cluster at {self.address} "
                                      f"has more than {most[key]:g} {key[4:7].upper()}(s) ({len(nodes)} node(s))")
        if most["num_cpus"] < 1:
            raise ConfigError(f"the Ray cluster at {self.address} has no node with a whole CPU to run tasks on")

    # -- recipe variants

    def make_variants(self, run, recipe, cfg, strategy: str) -> list:
        """One task per variant; each result's files are moved into `run` as soon as it is back. Returns the
        VariantResults in recipe order (export.recipe.export_recipe writes the manifest from them)."""
        from edgeport.export.recipe import VariantResult
        from edgeport.train.compress import Method, first_phase, memo_key

        if not run.model_path.is_file():
            raise ConfigError(f"--ray sends the reference model to each task as one file; this run's reference "
                              f"{run.model_path.name} is a SavedModel folder: run it without --ray")
        model_ref = self.ray.put(run.model_path.read_bytes())
        rel = run.model_path.relative_to(run.path).as_posix()  # model.keras, or source/NAME for an imported model
        inputs = (model_ref, files.sha256_file(run.model_path), rel, run.resolved_record())
        refs, providers = {}, {}
        for v in recipe.variants:
            first = first_phase(v.compress)
            phase = [refs[providers[memo_key(first)]]] if first is not None and memo_key(first) in providers else []
            gpus = v.num_gpus or 0
            options = {"num_cpus": v.num_cpus or 1, "num_gpus": gpus, "max_retries": self.cfg.max_retries,
                       "retry_exceptions": True, "name": f"edgeport variant {v.name}"}
            if gpus:
                options["max_calls"] = 1  # a fresh worker per GPU task: TensorFlow keeps GPU memory until exit
            refs[v.name] = self._variant.options(**options).remote(v, cfg, *inputs, strategy, phase)
            if v.compress.method in (Method.PRUNE, Method.CLUSTER):
                providers[memo_key(v.compress)] = v.name

        def arrived(name: str, value) -> VariantResult:
            if isinstance(value, Exception):
                return VariantResult(name, error=_task_failure(value, self.cfg.max_retries),
                                     executor={"kind": "ray", "task_id": refs[name].task_id().hex()})
            result, payload = value
            if result.ok:
                with files.staging_dir(run.path, name) as stage:
                    for rel, data in payload.items():
                        files.write_bytes(stage / _inside(rel), data)
                    files.commit_staged(stage, run.path)
            return result

        done = self._gather(refs, "variant", arrived)
        return [done[v.name] for v in recipe.variants]

    # -- evaluation and benchmarks

    def evaluate(self, run: Path, entries: list[dict], images: np.ndarray, labels: np.ndarray,
                 reference: np.ndarray | None, bench_cfg) -> tuple[list[dict], dict, dict | None]:
        """Evaluate every manifest entry as its own task, then benchmark the files that ran in one task on one
        node. Returns (report rows in manifest order, {name: top-1 predictions}, where the benchmarks ran)."""
        from edgeport.pipeline import artifact_row, source_probs
        from edgeport.runtime.bench import headline

        put = self.ray.put
        data = (put(np.asarray(images, np.uint8)), put(labels), put(reference))  # a lazy image folder: decoded once
        retry = {"max_retries": self.cfg.max_retries, "retry_exceptions": True}
        refs, rows = {}, {}
        for e in entries:
            path = run / e["path"]
            if path.is_file():
                task = self._evaluate.options(num_cpus=1, name=f"edgeport eval {e['name']}", **retry)
                try:  # fidelity against the model the file was converted from
                    source = (e.get("lineage") or {}).get("source_predictions")
                    args = data if not source else (*data[:2], put(source_probs(run, e, labels, reference)))
                except EdgeportError as exc:
                    rows[e["name"]] = artifact_row(e) | {"status": "failed", "error": str(exc)}
                    continue
                refs[e["name"]] = task.remote(e, path.read_bytes(), *args)
            else:
                rows[e["name"]] = artifact_row(e) | {"status": "failed", "error": f"{path}: model file not found"}

        def arrived(name: str, value):
            if isinstance(value, Exception):
                return artifact_row(next(e for e in entries if e["name"] == name)) | {
                    "status": "failed", "error": _task_failure(value, self.cfg.max_retries)}
            return value

        predictions = {}
        for name, value in self._gather(refs, "eval", arrived).items():
            rows[name], found = value if isinstance(value, tuple) else (value, None)
            if found is not None:
                predictions[name] = found
        rows = [rows[e["name"]] for e in entries]
        if bench_cfg is None:
            return rows, predictions, None
        ok = [(r, run / r["path"]) for r in rows if r["status"] == "ok"]
        cpus = min(max(bench_cfg.threads or (1,)), max(int(n["cpus"]) for n in self.nodes()))
        ref = self._bench.options(num_cpus=max(1, cpus), name="edgeport benchmarks", **retry).remote(
            [(r["name"], p.name, p.read_bytes()) for r, p in ok], data[0], bench_cfg)
        got = self._gather({"benchmarks": ref}, "bench", lambda _, v: v)["benchmarks"]
        if isinstance(got, Exception):
            for r, _ in ok:
                r.update(status="failed", error=f"benchmark: {_task_failure(got, self.cfg.max_retries)}")
            return rows, predictions, None
        benches, where = got
        for r, _ in ok:
            b = benches[r["name"]]
            if "error" in b:
                r.update(status="failed", error=b["error"])
            else:
                r["benchmark"] = b
                r.update(headline(b))
        return rows, predictions, where

    # -- waiting

    def _gather(self, refs: dict, what: str, arrived: Callable[[str, object], object]) -> dict:
        """Wait for every task, handing each value (or the exception it ended with) to `arrived` as it comes back,
        with a progress line per task. Ctrl-C cancels the tasks still out, then re-raises."""
        ray = self.ray
        pending = {ref: name for name, ref in refs.items()}
        out: dict = {}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    name = pending.pop(ref)
                    try:
                        value = ray.get(ref)
                    except Exception as exc:  # RayTaskError after retries, WorkerCrashedError, NodeDiedError, ...
                        value = exc
                    _progress(what, name, value, len(out) + 1, len(refs))
                    out[name] = arrived(name, value)
        except KeyboardInterrupt:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        return out


def _progress(what: str, name: str, value, done: int, total: int) -> None:
    """One line per task back: what, status, where and how long."""
    status, info = "failed", {}
    if not isinstance(value, Exception):
        first, second = value
        if what == "variant":
            status, info = ("done" if first.ok else "failed"), first.executor
        elif what == "eval":
            status, info = ("done" if first["status"] == "ok" else "failed"), first.get("executor") or {}
        else:
            status, info = "done", second
    where = f" on {info.get('host')} (node {str(info.get('node_id'))[:8]}) in {info.get('seconds', 0):.1f} s" \
        if info.get("node_id") else ""
    print(f"ray: {what} {name} {status}{where} [{done}/{total}]", file=sys.stderr)


def _task_failure(exc: Exception, retries: int) -> str:
    """One line for a task that did not come back: the original exception where Ray kept it."""
    from edgeport.export.recipe import crash_reason

    cause = getattr(exc, "cause", None)
    reason = crash_reason(cause if isinstance(cause, BaseException) else exc)
    return f"{reason} (Ray task failed after {retries} retr{'y' if retries == 1 else 'ies'})"


def _inside(rel: str) -> PurePosixPath:
    """A path a task returned, refused unless it stays inside the run folder."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise EdgeportError(f"a Ray task returned a file outside the run folder: {rel!r}")
    return p


# ---- the tasks (run in Ray workers) --------------------------------------------------------------------------


def _where(t0: float) -> dict:
    """This task's executor record: node, host, task id and seconds."""
    import ray

    ctx = ray.get_runtime_context()
    return {"kind": "ray", "node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "host": platform.node(), "task_id": ctx.get_task_id(), "pid": os.getpid(),
            "seconds": round(time.perf_counter() - t0, 2)}


_CACHE: dict[str, object] = {}  # per worker process: the last run's folder (data loaded once) and Compressor


def _run_folder(model_bytes: bytes, sha: str, model_name: str, record: dict):
    """The run as this worker sees it: the reference model and train.json in a scratch folder, opened as a
    RunFolder (so the dataset is loaded from train.json's data settings, once per worker process and run)."""
    from edgeport.core.run import TRAIN_RECORD, RunFolder

    key = (sha, json.dumps(record, sort_keys=True, default=str))
    if _CACHE.get("key") != key:
        old = _CACHE.get("folder")
        if old is not None:
            import shutil

            shutil.rmtree(old, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix="edgeport-ray-"))
        files.write_bytes(folder / model_name, model_bytes)
        files.write_json(folder / TRAIN_RECORD, record)
        _CACHE.clear()
        _CACHE.update(key=key, folder=folder, run=RunFolder(folder))
    return _CACHE["run"]


def _compressor(run, strategy: str):
    """One Compressor per worker process, run and strategy: the folded model and the memoised fine-tunes are reused
    by the next task of the same run on this worker."""
    from edgeport.train.compress import Compressor

    if _CACHE.get("strategy") != strategy:
        _CACHE.update(compressor=Compressor(run.model_path, run.dataset(), quiet=True, spec=run.spec,
                                            strategy=strategy), strategy=strategy)
    return _CACHE["compressor"]


def _variant_task(v, cfg, model_bytes: bytes, sha: str, model_name: str, record: dict, strategy: str, phase: list):
    """Make one variant in a scratch folder; return (VariantResult, {relative path: bytes}) for the driver."""
    import ray

    from edgeport.export.recipe import make_variant
    from edgeport.train.compress import Method, first_phase

    t0 = time.perf_counter()
    run = _run_folder(model_bytes, sha, model_name, record)
    compressor = _compressor(run, strategy) if v.compress.method is not Method.FLOAT else None
    if phase and compressor is not None:
        try:
            provider, payload = ray.get(phase[0])
        except Exception:  # the prune/cluster task failed: this task fine-tunes its first phase itself
            provider = None
        if provider is not None and provider.phase is not None:
            with tempfile.TemporaryDirectory(prefix="edgeport-phase-") as scratch:
                path = Path(scratch) / PurePosixPath(provider.phase["file"]).name
                path.write_bytes(payload[provider.phase["file"]])
                compressor.adopt(first_phase(v.compress), path, provider.phase["lineage"])
    with tempfile.TemporaryDirectory(prefix=f"edgeport-{v.name}-") as scratch:
        stage = Path(scratch)
        result = make_variant(v, run, cfg, stage, compressor)
        payload = {p.relative_to(stage).as_posix(): p.read_bytes() for p in sorted(stage.rglob("*"))
                   if p.is_file()} if result.ok else {}
    result.executor = _where(t0)
    return result, payload


def _evaluate_task(entry: dict, data: bytes, images: np.ndarray, labels: np.ndarray, reference: np.ndarray | None):
    """Evaluate one file: (its report row with this task's executor, its top-1 predictions or None)."""
    from edgeport.pipeline import evaluate_artifact

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeport-eval-") as scratch:
        path = Path(scratch) / Path(entry["path"]).name
        path.write_bytes(data)
        row, predictions = evaluate_artifact(path, entry, images, labels, reference)
    row["executor"] = _where(t0)
    return row, predictions


def _bench_task(items: list[tuple[str, str, bytes]], images: np.ndarray, bench_cfg):
    """Benchmark every (name, file name, bytes) here, one after another: ({name: benchmark or {"error"}}, where)."""
    from edgeport.core.environment import cpu_count
    from edgeport.runtime.bench import benchmark_file

    t0 = time.perf_counter()
    out = {}
    with tempfile.TemporaryDirectory(prefix="edgeport-bench-") as scratch:
        for name, file_name, data in items:
            path = Path(scratch) / file_name
            path.write_bytes(data)
            try:
                out[name] = benchmark_file(path, images, bench_cfg)
            except EdgeportError as exc:
                out[name] = {"error": str(exc)}
            path.unlink()
    return out, _where(t0) | {"cpus": cpu_count(), "machine": platform.machine(),
                              "python": platform.python_version()}
