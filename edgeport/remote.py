"""Benchmark on real devices over SSH, beside the host, in one report.

Per device, the host
  1. connects and asks the device's Python what it is (host name, OS, CPU, Python and runtime versions) and
     whether edgeport is installed; edgeport makes a temporary folder there;
  2. streams the model files and the test images (`images.npz`: uint8 x_test, int y_test) into that folder as a
     tar on ssh's standard input, and runs the device's own runtime on them:
     `python -m edgeport bench FILES --data images.npz --json --predictions` with the host's benchmark settings;
  3. reads the JSON report from standard output and compares each file's answers with the host's.
The folder is removed by the device-side runner (device_side.py, sent as source: it runs whatever edgeport the
device has) however the benchmark ends, and the runner stops the benchmark at the device's deadline even if the
host has gone away; on a timeout or Ctrl-C the host also stops it and removes the folder over a fresh connection.

Transport: the system OpenSSH client (ssh.py). Files travel through ssh itself, unpacked by the device's Python:
no scp/sftp server is needed (Dropbear boards have none). Host keys are verified (BatchMode: never a prompt;
StrictHostKeyChecking=yes) unless `insecure_accept_host_key`, which the output and the report then say.
Devices run concurrently, each within its own deadline; one that is down, refuses, has a wrong host key or
lacks edgeport is reported with the reason while the others complete.
"""

from __future__ import annotations

import base64
import io as _io
import json
import re
import tarfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from edgeport import device_side, ssh
from edgeport.core.data import DataConfig, Dataset
from edgeport.core.errors import ConfigError
from edgeport.pipeline import Answers
from edgeport.runtime.bench import BenchConfig, Interrupted

SCHEMES = ("ssh",)  # the device URL schemes edgeport can reach
DEVICE_KEYS = {"url": str, "name": str, "python": str, "timeout": (int, float)}  # a [[device]] entry in a devices file
SETTINGS_KEYS = {"python": str, "timeout": (int, float), "ssh_config": str}  # [settings]: defaults for every device
HOST_NAME = "host"  # the name of the machine running edgeport in the report's device list
SKIPPED_FORMATS = {"tflm": "a C array for microcontrollers: its arena is in the Microcontroller (TFLM) section"}
IMAGES = "images.npz"
DIFF_INDICES = 20  # test-set indices listed per file whose answers differ from the host's
RUNNER_MARGIN_S = 5.0  # the device-side runner stops this much (at most a tenth of what is left) before the host


@dataclass(frozen=True)
class Device:
    """One device to benchmark on, reached over SSH."""

    name: str  # column title in the report
    url: str  # as given: ssh://[user@]host[:port]
    host: str
    user: str | None = None  # None: ssh's default (~/.ssh/config, then the local user name)
    port: int | None = None  # None: ssh's default (~/.ssh/config, then 22)
    python: str = "python3"  # the device's Python with edgeport installed (e.g. ~/venv/bin/python)
    timeout_s: float = 900.0  # connecting + copying + benchmarking on this device, seconds


@dataclass(frozen=True)
class RemoteConfig:
    ssh_config: str | None = None  # ssh -F FILE; None: the user's ~/.ssh/config as ssh reads it
    insecure_accept_host_key: bool = False  # accept any host key without checking it (said in output and report)
    connect_timeout_s: int = 20  # ssh ConnectTimeout: TCP connect and SSH handshake
    cleanup_timeout_s: float = 30.0  # the connection that removes a folder after a timeout or Ctrl-C


@dataclass
class DeviceResult:
    """One device's part of the report (`report["devices"][k]`), filled in as the device gets further."""

    name: str
    url: str
    python: str
    status: str = "failed"  # "ok" | "failed" | "interrupted"
    error: str | None = None  # the reason, when not ok
    host_key_verified: bool | None = None  # None: the connection never got that far
    info: dict = field(default_factory=dict)  # what the device is: hostname, os, cpu_model, cpus, python, packages
    artifacts: list[dict] = field(default_factory=list)  # per file: the device's figures, compared with the host's
    notes: list[str] = field(default_factory=list)
    cleanup: str | None = None  # how removing the folder went, when the host had to do it
    seconds: float | None = None
    bench: dict | None = None  # the benchmark settings the device ran with
    test_images: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class DeviceFailed(Exception):
    """A device could not be benchmarked; the message is the reason shown in the report."""


def _target(dev: Device, remote: RemoteConfig) -> ssh.SshTarget:
    return ssh.SshTarget(dev.host, dev.user, dev.port, remote.ssh_config, remote.insecure_accept_host_key,
                         remote.connect_timeout_s)


def _on_device(dev: Device, remote: RemoteConfig, args: list[str], deadline: float,
               cancel: threading.Event | None, **kwargs) -> tuple[int, str, str]:
    """Run a device_side.py command with the device's Python; SSH failures become DeviceFailed reasons."""
    try:
        return ssh.run(_target(dev, remote), [dev.python, "-c", DEVICE_SIDE, *args], deadline, cancel, **kwargs)
    except ssh.SshTimeout:
        raise DeviceFailed(f"timed out after {dev.timeout_s:g} s") from None
    except ssh.SshError as exc:
        raise DeviceFailed(str(exc)) from None


# device_side.py's source as a one-line `python -c` program (base64: any login shell passes it through intact)
DEVICE_SIDE = ("import base64,sys;exec(base64.b64decode('" + base64.b64encode(
    (Path(device_side.__file__).read_text(encoding="utf-8")).encode()).decode() + "').decode())")


# --- which devices --------------------------------------------------------------------------------------------
def parse_device(url: str, name: str | None = None, python: str | None = None,
                 timeout_s: float | None = None) -> Device:
    """A Device from `ssh://[user@]host[:port]`; a malformed URL or another scheme is a ConfigError."""
    expected = "expected ssh://[user@]host[:port]"
    if "://" not in url:
        raise ConfigError(f"device {url!r} is not a URL; {expected}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"device {url!r}: {exc}; {expected}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigError(f"device {url!r}: unknown scheme {parts.scheme!r}; {expected}")
    host, user = parts.hostname, parts.username
    if not host or parts.path not in ("", "/") or parts.query or parts.fragment or parts.password is not None:
        raise ConfigError(f"device {url!r}: {expected} (no path, password, query or fragment)")
    if host.startswith("-") or (user or "").startswith("-") or not re.fullmatch(r"[\w.:%-]+", host):
        raise ConfigError(f"device {url!r}: {host!r} is not a host name or address")
    if timeout_s is not None and not timeout_s > 0:
        raise ConfigError(f"device {url!r}: timeout must be > 0 seconds, got {timeout_s}")
    return Device(name=name or (host if port is None else f"{host}:{port}"), url=url, host=host, user=user,
                  port=port, python=python or Device.python, timeout_s=timeout_s or Device.timeout_s)


def load_devices(path: str | Path) -> tuple[list[Device], str | None]:
    """The devices of a TOML file (`[[device]]` entries, optional `[settings]`) and its ssh_config, if any."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: devices file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: not a readable TOML devices file ({exc})") from None
    _check_keys(raw, {"device": list, "settings": dict}, f"{p}")
    settings = raw.get("settings", {})
    _check_keys(settings, SETTINGS_KEYS, f"{p}: [settings]")
    entries = raw.get("device", [])
    if not entries:
        raise ConfigError(f"{p}: no [[device]] entries; each needs url = \"ssh://user@host\"")
    devices = []
    for k, entry in enumerate(entries, 1):
        where = f"{p}: [[device]] {k}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table with url = \"ssh://user@host\"")
        _check_keys(entry, DEVICE_KEYS, where)
        if "url" not in entry:
            raise ConfigError(f"{where}: url is missing (e.g. url = \"ssh://pi@raspberrypi.local\")")
        devices.append(parse_device(entry["url"], entry.get("name"), entry.get("python", settings.get("python")),
                                    entry.get("timeout", settings.get("timeout"))))
    ssh_config = settings.get("ssh_config")
    return devices, str(p.parent / Path(ssh_config).expanduser()) if ssh_config else None


def _check_keys(table: dict, allowed: dict, where: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; expected one of: {', '.join(allowed)}")
        if not isinstance(value, allowed[key]) or isinstance(value, bool):
            kind = allowed[key].__name__ if isinstance(allowed[key], type) else "number"
            raise ConfigError(f"{where}: {key} must be a {kind}, got {value!r}")


def devices_from_args(urls: list[str] | None, names: list[str] | None = None, pythons: list[str] | None = None,
                      devices_file: str | None = None, timeout_s: float | None = None
                      ) -> tuple[list[Device], str | None]:
    """The CLI's devices: --devices FILE entries, then each --device URL (a --device-name / --device-python given
    once per --device pairs with it in order; --device-python given once applies to all)."""
    urls, names, pythons = urls or [], names or [], pythons or []
    if names and len(names) != len(urls):
        raise ConfigError(f"--device-name given {len(names)} times for {len(urls)} --device; give one per --device")
    if len(pythons) > 1 and len(pythons) != len(urls):
        raise ConfigError(f"--device-python given {len(pythons)} times for {len(urls)} --device; give it once "
                          "(for every device) or once per --device")
    devices, ssh_config = load_devices(devices_file) if devices_file else ([], None)
    if timeout_s is not None:
        devices = [replace(d, timeout_s=timeout_s) for d in devices]
    for k, url in enumerate(urls):
        python = pythons[k] if len(pythons) > 1 else (pythons[0] if pythons else None)
        devices.append(parse_device(url, names[k] if names else None, python, timeout_s))
    seen = {HOST_NAME}
    for d in devices:
        if d.name in seen:
            raise ConfigError(f"two devices are named {d.name!r}" + (" (the local machine's column)"
                                                                     if d.name == HOST_NAME else "")
                              + "; name them with --device-name or name = \"...\" in the devices file")
        seen.add(d.name)
    return devices, ssh_config


# --- the host side --------------------------------------------------------------------------------------------
def bench_with_devices(paths: list[str | Path], devices: list[Device], bench_cfg: BenchConfig = BenchConfig(),
                       remote: RemoteConfig = RemoteConfig(), data: DataConfig | str | None = None,
                       limit: int | None = None, progress: bool = True, answers: Answers | None = None) -> dict:
    """Benchmark a run folder (or model files) on this machine, then on every device; one report.

    The report is the host's (as `evaluate_run`/`evaluate_files` make it) plus `devices`: the host first (its
    results are the report's artifacts), then each device with its own artifacts, status and reason. The devices
    get the host's test images (when the host had labelled data for the files) and its benchmark settings.
    `answers`, when given, receives the host's top-1 classes and test set.
    Ctrl-C raises `Interrupted` with what was measured, after removing every remote folder it can reach.
    """
    from edgeport.core.environment import machine_info
    from edgeport.pipeline import evaluate_files, evaluate_run

    if not devices:
        raise ConfigError("no devices given")
    paths = [Path(p) for p in paths]
    host = answers if answers is not None else Answers()
    base = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
    if base is not None:
        report = evaluate_run(base, bench_cfg, answers=host)
    else:
        report = evaluate_files(paths, data=data, bench_cfg=bench_cfg, limit=limit, answers=host)
    files, skipped = [], {}
    for row in report["artifacts"]:
        if row.get("format") in SKIPPED_FORMATS:
            skipped[row["name"]] = SKIPPED_FORMATS[row["format"]]
        elif row.get("path"):
            files.append((row["name"], (base / row["path"]) if base else Path(row["path"])))
    payload = _payload(files, host.dataset)
    report["devices"] = [{"name": HOST_NAME, "local": True, "status": "ok", "info": machine_info()}]
    if remote.insecure_accept_host_key:
        report["host_keys_verified"] = False
    try:
        report["devices"] += bench_on_devices(devices, payload, host.predictions, bench_cfg, remote, skipped,
                                              {r["name"]: r for r in report["artifacts"]}, progress)
    except Interrupted as exc:
        report["devices"] += exc.partial["devices"]
        raise Interrupted(report | {"interrupted": True}) from None
    return report


@dataclass(frozen=True)
class Payload:
    """What travels to every device: a tar of the files (and images.npz), and which uploaded file is which."""

    tar: bytes
    names: dict[str, str]  # uploaded file name -> artifact name
    images: int  # test images in images.npz (0: none sent; the device then measures speed only, like the host)


def _payload(files: list[tuple[str, Path]], dataset: Dataset | None) -> Payload:
    """A tar (in memory) holding each file under a unique name and the host's test set as images.npz (uint8
    x_test, int y_test and the class names: what `--data` reads, without pickle)."""
    buf, names = _io.BytesIO(), {}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, path in files:
            upload = path.name if path.name not in names and path.name != IMAGES else f"{len(names)}_{path.name}"
            names[upload] = name
            tar.add(str(path), arcname=upload)
        if dataset is not None:
            npz = _io.BytesIO()
            np.savez_compressed(npz, x_test=np.asarray(dataset.test_images, np.uint8),
                                y_test=np.asarray(dataset.test_labels, np.int64),
                                labels=np.array(dataset.spec.labels, dtype=str))
            info = tarfile.TarInfo(IMAGES)
            info.size = npz.getbuffer().nbytes
            npz.seek(0)
            tar.addfile(info, npz)
    return Payload(buf.getvalue(), names, 0 if dataset is None else len(dataset.test_images))


def bench_on_devices(devices: list[Device], payload: Payload, host_preds: dict, bench_cfg: BenchConfig,
                     remote: RemoteConfig, skipped: dict | None = None, host_rows: dict | None = None,
                     progress: bool = True) -> list[dict]:
    """Run every device concurrently; return one entry per device, in the order given."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    cancel = threading.Event()
    console = Console(stderr=True)
    if remote.insecure_accept_host_key:
        console.print("edgeport: warning: --insecure-accept-host-key: device host keys are NOT verified; anyone "
                      "on the network path could pose as the device", style="yellow", highlight=False, soft_wrap=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True, disable=not progress) as bar, ThreadPoolExecutor(max(len(devices), 1)) as pool:
        tasks = {d.name: bar.add_task(f"{d.name}: waiting", total=None) for d in devices}

        def status(d: Device, text: str) -> None:
            bar.update(tasks[d.name], description=f"{d.name}: {text}")

        futures = [pool.submit(_bench_device, d, payload, host_preds, bench_cfg, remote, skipped or {},
                               host_rows or {}, lambda text, d=d: status(d, text), cancel) for d in devices]
        try:
            while not all(f.done() for f in futures):
                wait_futures(futures, timeout=0.25)
        except KeyboardInterrupt:
            cancel.set()  # each device stops its benchmark and removes its folder
            console.print("edgeport: interrupted; stopping the devices and removing their temporary folders",
                          highlight=False, soft_wrap=True)
            wait_futures(futures)
            raise Interrupted({"devices": [f.result().to_dict() for f in futures], "interrupted": True}) from None
    entries = [f.result() for f in futures]
    for e in entries:
        line = f"{e.name}: " + (f"ok ({e.seconds:.0f} s)" if e.status == "ok" else f"{e.status}: {e.error}")
        console.print(line, style=None if e.status == "ok" else "red", highlight=False, soft_wrap=True)
    return [e.to_dict() for e in entries]


def _bench_device(dev: Device, payload: Payload, host_preds: dict, cfg: BenchConfig, remote: RemoteConfig,
                  skipped: dict, host_rows: dict, status: Callable[[str], None],
                  cancel: threading.Event) -> DeviceResult:
    """Probe, copy, benchmark, compare: one device's result (status "ok", "failed" or "interrupted")."""
    from edgeport import __version__

    t0 = time.monotonic()
    deadline = t0 + dev.timeout_s
    result = DeviceResult(dev.name, dev.url, dev.python)
    remote_dir = None
    finished = False
    try:
        status("connecting")
        probe = _probe(dev, remote, deadline, cancel)
        result.host_key_verified = not remote.insecure_accept_host_key  # ssh checked it (or was told not to)
        result.info = {k: v for k, v in probe.items() if k != "dir"}
        remote_dir = probe["dir"]
        if probe.get("edgeport") != __version__:
            result.notes.append(f"the device runs edgeport {probe.get('edgeport')}, this machine {__version__}")
        status(f"copying {len(payload.names)} files and {payload.images} images ({len(payload.tar) / 2**20:.1f} MB)")
        args = [*payload.names, *(["--data", IMAGES] if payload.images else []), "--json", "--predictions",
                *_bench_flags(cfg)]
        # the device stops itself a little before the host would: it then reports the timeout and cleans up alone
        left = deadline - time.monotonic()
        device_seconds = max(left - min(RUNNER_MARGIN_S, left / 10), 1.0)
        rc, out, err = _on_device(
            dev, remote, ["run", remote_dir, f"{device_seconds:.1f}", *args], deadline, cancel, stdin=payload.tar,
            on_line=lambda line: status("benchmarking") if line.startswith(device_side.COPIED) else None)
        finished = True  # the runner removed its folder, whatever the benchmark's outcome
        device_report = _device_report(rc, out, err, dev)
        result.artifacts = _compare(device_report, payload.names, host_preds, host_rows, skipped)
        result.bench = device_report.get("bench")
        result.test_images = (device_report.get("dataset") or {}).get("test_images")
        result.status = "ok"
    except DeviceFailed as exc:
        result.error = str(exc)
        result.status = "interrupted" if cancel.is_set() else "failed"
    except Exception as exc:  # a bug here must not lose the other devices' results
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if remote_dir and not finished:
            status("removing the temporary folder")
            result.cleanup = _cleanup(dev, remote, remote_dir)
        result.seconds = round(time.monotonic() - t0, 1)
    return result


def _bench_flags(cfg: BenchConfig) -> list[str]:
    """The host's benchmark settings as the device's `edgeport bench` flags."""
    flags = ["--runs", str(cfg.runs), "--warmup", str(cfg.warmup), "--threads", ",".join(map(str, cfg.threads)),
             "--batch-sizes", ",".join(map(str, cfg.batch_sizes)), "--memory-repeats", str(cfg.memory_repeats)]
    return flags + (["--time-budget", str(cfg.time_budget_s)] if cfg.time_budget_s else [])


def _probe(dev: Device, remote: RemoteConfig, deadline: float, cancel: threading.Event) -> dict:
    rc, out, err = _on_device(dev, remote, ["probe"], deadline, cancel)
    if rc == 127 or (rc != 0 and "not found" in err and not out.strip()):
        raise DeviceFailed(f"{dev.python} not found on the device; give the Python that has edgeport with "
                           "--device-python (e.g. ~/venv/bin/python)")
    try:
        probe = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DeviceFailed(f"the device's {dev.python} did not answer ({ssh.last_line(err, rc)})") from None
    if probe.get("missing"):
        raise DeviceFailed(f"edgeport is not installed for {probe.get('executable', dev.python)} on the device "
                           f"(Python {probe.get('python')}); install the runtime there: pip install edgeport")
    if probe.get("too_old"):
        raise DeviceFailed(f"the device's edgeport {probe.get('edgeport')} is too old for remote benchmarks; "
                           "upgrade it there: pip install -U edgeport")
    if not re.fullmatch(r"/[\w./-]*/" + device_side.FOLDER_PREFIX + r"\w+", probe.get("dir") or ""):
        raise DeviceFailed(f"the device gave an unexpected temporary folder {probe.get('dir')!r}")
    return probe


def _device_report(rc: int, out: str, err: str, dev: Device) -> dict:
    """The JSON report the device printed, or DeviceFailed with the device's own error line."""
    if rc == 124:
        raise DeviceFailed(f"timed out after {dev.timeout_s:g} s (the device stopped the benchmark)")
    try:  # the report is the last thing printed; a library may have printed a line before it
        report = json.loads(out[out.index("\n{") + 1:] if not out.startswith("{") and "\n{" in out else out)
    except ValueError:
        if "unrecognized arguments" in err:
            raise DeviceFailed("the device's edgeport is too old for remote benchmarks (" + ssh.last_line(err, rc)
                               + "); upgrade it there: pip install -U edgeport") from None
        raise DeviceFailed(f"the device's benchmark failed: {ssh.last_line(err, rc)}") from None
    if not isinstance(report, dict) or "artifacts" not in report:
        raise DeviceFailed("the device printed JSON that is not an edgeport report")
    return report


def _compare(device_report: dict, names: dict[str, str], host_preds: dict, host_rows: dict,
             skipped: dict) -> list[dict]:
    """Per file: the device's figures, and its accuracy and top-1 answers against the host's."""
    device_preds = device_report.get("predictions") or {}
    rows = []
    for r in device_report["artifacts"]:
        name = names.get(r["name"], r["name"])
        row = {"name": name, "status": r.get("status"), "error": r.get("error"), "accuracy": r.get("accuracy"),
               "latency_ms": r.get("latency_ms"), "model_peak_mb": r.get("model_peak_mb"),
               "overhead_ratio": r.get("overhead_ratio"), "gmacs_per_s": r.get("gmacs_per_s"),
               "best_images_per_s": r.get("best_images_per_s"), "threads": r.get("threads"),
               "benchmark": r.get("benchmark")}
        host_acc = (host_rows.get(name) or {}).get("accuracy")
        if row["accuracy"] is not None and host_acc is not None:
            row["accuracy_delta"] = row["accuracy"] - host_acc
        mine, theirs = device_preds.get(r["name"]), host_preds.get(name)
        if mine is not None and theirs is not None and len(mine) == len(theirs):
            differ = np.flatnonzero(np.asarray(mine) != np.asarray(theirs))
            row.update(agreement_with_host=1.0 - len(differ) / max(len(theirs), 1),
                       differs_from_host=int(len(differ)), differing_indices=differ[:DIFF_INDICES].tolist())
        rows.append(row)
    rows += [{"name": n, "status": "skipped", "error": why} for n, why in skipped.items()]
    return rows


def _cleanup(dev: Device, remote: RemoteConfig, remote_dir: str) -> str:
    """Stop the remote benchmark and remove its folder over a fresh connection; say how that went."""
    try:
        rc, _, err = _on_device(dev, remote, ["cleanup", remote_dir], time.monotonic() + remote.cleanup_timeout_s,
                                None)
    except DeviceFailed as exc:
        return (f"could not reach the device to remove {remote_dir} ({exc}); the device-side runner removes it "
                "when its own deadline passes")
    return f"removed {remote_dir}" if rc == 0 else f"removing {remote_dir} failed: {ssh.last_line(err, rc)}"
