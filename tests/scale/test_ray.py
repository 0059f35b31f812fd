"""--ray: a real two-node Ray cluster on loopback (ray.cluster_utils.Cluster) runs the default recipe's variants,
evaluations and benchmarks, with one task failing once and another always; the run folder matches a local run's.
Then Ctrl-C and bad input.

Each node has one CPU and a small object store, so the two nodes share this machine's cores like two machines.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow_model_optimization")
# Ray's single-machine mode: every node and driver on 127.0.0.1 (otherwise Ray binds this machine's own address).
# Read once, when Ray is imported: so here, before that.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'edgeport[scale]'")

from edgeport.core.errors import ConfigError  # noqa: E402
from edgeport.export.recipe import DEFAULT_RECIPE, parse_recipe  # noqa: E402
from edgeport.scale import RayConfig, connect  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

STORE = 80 * 2**20  # bytes of object store per node


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each, every process on 127.0.0.1."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": STORE,
                                                      "include_dashboard": False})
    c.add_node(num_cpus=1, object_store_memory=STORE)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("model.keras", "train.json", "reference.npz"):
        shutil.copy(src / name, dst / name)
    return dst


def _default_recipe_tiny(*extra: dict):
    """The packaged default recipe (every method, every target) with half an epoch per fine-tune, plus `extra`."""
    raw = tomllib.loads(DEFAULT_RECIPE.read_text())
    raw["settings"]["epochs"] = 0.5
    raw["variant"] += list(extra)
    return parse_recipe(raw, "default.toml (tiny)")


TINY_EXPORT = dict(calibration_size=32, validation_size=32)


def _files(run: Path) -> set[str]:
    return {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}


def _fault_hook(plan_dir: str):
    """A Ray worker setup hook that makes variant "float" fail on its first attempt and "doomed" on every one,
    counting attempts in files (a retry may land in another worker process)."""

    def install():
        from pathlib import Path

        import edgeport.export.recipe as recipe

        real = recipe.make_variant

        def make_variant(v, *args, **kwargs):
            marker = Path(plan_dir) / f"{v.name}.attempts"
            n = int(marker.read_text()) + 1 if marker.exists() else 1
            marker.write_text(str(n))
            if v.name == "doomed" or (v.name == "float" and n == 1):
                raise RuntimeError(f"injected fault in {v.name}, attempt {n}")
            return real(v, *args, **kwargs)

        recipe.make_variant = make_variant

    return install


DOOMED = {"method": "float", "name": "doomed", "targets": ["web_tflite_fp32"]}  # a variant whose task always fails


@pytest.fixture(scope="module")
def local_and_ray(tiny_run, cluster, tmp_path_factory):
    """The tiny default recipe on the same trained model: once here, once on the cluster (with a small benchmark)
    under a fault plan: the float variant's task fails once, and an extra variant's task on every attempt."""
    from ray import cloudpickle

    from edgeport.export.export import ExportConfig, export_run
    from edgeport.pipeline import BenchConfig, evaluate_run

    recipe, cfg = _default_recipe_tiny(), ExportConfig(**TINY_EXPORT)
    local = _copy_run(tiny_run, tmp_path_factory.mktemp("scale") / "local")
    export_run(local, cfg, recipe=recipe)
    local_report = evaluate_run(local, None)

    plan = tmp_path_factory.mktemp("fault_plan")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hook travels by value, not by module name
    faulty = _default_recipe_tiny(DOOMED)
    remote = _copy_run(tiny_run, tmp_path_factory.mktemp("scale") / "ray")
    bench = BenchConfig(runs=5, warmup=1, threads=(1,), batch_sizes=(1,), throughput_runs=2, overhead_runs=5)
    with connect(RayConfig(address=cluster.address, max_retries=2,
                           runtime_env={"worker_process_setup_hook": _fault_hook(str(plan))})) as executor:
        executor.check(faulty)
        export_run(remote, cfg, recipe=faulty, executor=executor)
        ray_report = evaluate_run(remote, bench, executor=executor)
    return local, local_report, remote, ray_report, plan


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_ray_run_folder_holds_every_file_of_the_local_run(local_and_ray):
    local, _, remote, _, _ = local_and_ray
    assert _files(remote) == _files(local)  # artifacts/, compressed/, manifest; no staging folder left over
    names = [a["name"] for a in _manifest(local)["artifacts"]]
    assert [a["name"] for a in _manifest(remote)["artifacts"]] == names
    assert len(names) == 15 and _manifest(local)["failed"] == []
    assert list(_manifest(remote)) == list(_manifest(local))  # the same manifest fields, in the same order


def test_ray_accuracies_equal_the_local_runs(local_and_ray):
    _, local_report, _, ray_report, _ = local_and_ray
    local_acc = {r["name"]: r["accuracy"] for r in local_report["artifacts"]}
    ray_acc = {r["name"]: r["accuracy"] for r in ray_report["artifacts"] if r["status"] == "ok"}
    assert set(ray_acc) == set(local_acc)
    off = {n: (local_acc[n], ray_acc[n]) for n in local_acc if abs(local_acc[n] - ray_acc[n]) > 0.001}
    assert off == {}, off  # within 0.1 point: seeded fine-tunes give the same models in any process


def test_lineage_shows_tasks_on_more_than_one_node(local_and_ray):
    local, _, remote, ray_report, _ = local_and_ray
    made = [a["lineage"]["executor"] for a in _manifest(remote)["artifacts"]]
    assert {e["kind"] for e in made} == {"ray"}
    assert len({e["node_id"] for e in made}) == 2, made
    assert all(e["task_id"] and e["seconds"] > 0 for e in made)
    assert {a["lineage"]["executor"]["kind"] for a in _manifest(local)["artifacts"]} == {"local"}
    assert _manifest(remote)["executor"]["kind"] == "ray" and len(_manifest(remote)["executor"]["nodes"]) == 2
    ok = [r for r in ray_report["artifacts"] if r["status"] == "ok"]
    assert len(ok) == 15 and {r["executor"]["node_id"] for r in ok} <= {e["node_id"] for e in made}
    bench = ray_report["bench_executor"]  # every benchmark on one node, which the report names
    assert bench["kind"] == "ray" and bench["node_id"] in {e["node_id"] for e in made}
    assert all(r["latency_ms"]["p50"] > 0 for r in ok)


def test_pqat_first_phase_is_the_prune_variants_fine_tune(local_and_ray):
    _, _, remote, _, _ = local_and_ray
    arts = {a["name"]: a["lineage"] for a in _manifest(remote)["artifacts"]}
    prune, first = arts["prune_tflite_int8"]["training"], arts["pqat_tflite_int8"]["training"]["first_phase"]
    assert first == {k: prune[k] for k in first}


def test_a_fault_is_retried_and_a_lasting_one_fails_only_its_variant(local_and_ray):
    _, _, remote, ray_report, plan = local_and_ray
    assert (plan / "float.attempts").read_text() == "2"  # failed once, then Ray's retry made it
    assert (plan / "doomed.attempts").read_text() == "3"  # the first attempt and both retries
    (failed,) = _manifest(remote)["failed"]
    assert failed["variant"] == "doomed" and "RuntimeError: injected fault in doomed" in failed["error"]
    assert "after 2 retries" in failed["error"] and failed["artifacts"][0]["name"] == "web_tflite_fp32"
    assert not list(remote.glob("artifacts/web_*"))
    row = next(r for r in ray_report["artifacts"] if r["name"] == "web_tflite_fp32")
    assert row["status"] == "failed" and "variant doomed was not made: RuntimeError" in row["error"]


FAULT_RECIPE = {"variant": [{"method": "float", "targets": ["tflite_fp32"]},
                            {"method": "float", "name": "doomed", "targets": ["onnx_fp32"]},
                            {"method": "float", "name": "steady", "targets": ["tflite_dynamic_int8"]}]}


def test_ctrl_c_cancels_outstanding_tasks_and_writes_no_manifest(tiny_run, cluster, tmp_path, monkeypatch):
    from edgeport.export.export import ExportConfig, export_run

    run = _copy_run(tiny_run, tmp_path / "run")
    cancelled = []
    real_cancel = ray.cancel

    def wait(*args, **kwargs):
        raise KeyboardInterrupt

    def cancel(ref, **kwargs):
        cancelled.append(ref)
        return real_cancel(ref, **kwargs)

    with connect(RayConfig(address=cluster.address)) as executor:
        monkeypatch.setattr(ray, "wait", wait)
        monkeypatch.setattr(ray, "cancel", cancel)
        with pytest.raises(KeyboardInterrupt):
            export_run(run, ExportConfig(**TINY_EXPORT), recipe=parse_recipe(FAULT_RECIPE, "faults.toml"),
                       executor=executor)
        monkeypatch.undo()
    assert len(cancelled) == 3  # every variant's task
    assert _files(run) == {"model.keras", "train.json", "reference.npz"}  # no manifest, no staging folder


# ---- bad input -------------------------------------------------------------------------------------------------


def test_a_version_mismatch_is_one_line(cluster, monkeypatch):
    monkeypatch.setattr(ray, "__version__", "0.0.1")
    with pytest.raises(ConfigError, match=r"Ray version mismatch at .*: the cluster runs Ray \S+ on Python \S+, "
                                          r"this process Ray 0\.0\.1 on Python"):
        with connect(RayConfig(address=cluster.address)):
            pass
    assert not ray.is_initialized()


def test_a_recipe_asking_for_gpus_the_cluster_lacks_fails_before_any_work(tiny_run, cluster, tmp_path):
    from edgeport.pipeline import run_pipeline

    recipe = parse_recipe({"variant": [{"method": "float", "targets": ["tflite_fp32"]},
                                       {"method": "qat", "targets": ["tflite_int8"], "num_gpus": 1}]}, "gpu.toml")
    out = tmp_path / "never"
    with connect(RayConfig(address=cluster.address)) as executor:
        with pytest.raises(ConfigError, match=r"gpu.toml: variant 2 \(qat\): num_gpus = 1, but no node of the Ray "
                                              r"cluster at .* has more than 0 GPU\(s\) \(2 node\(s\)\)"):
            run_pipeline(out, recipe=recipe, executor=executor)
    assert not out.exists()


def test_cli_unreachable_address_exits_2_and_writes_nothing(tmp_path, capsys):
    import socket

    from edgeport.cli import main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    assert main(["run", "--quick", "--out", str(out), "--ray", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edgeport: error: Ray address 127.0.0.1:{port} is unreachable (Connection refused); start a head "
                   f"there with `ray start --head --port {port}`, or check the address"]
    assert not out.exists()
