"""Benchmark on a device over SSH, against a real OpenSSH server on a loopback port.

The "device" is a separate virtual environment with only `pip install edgeport` (built from this source tree, no
extras, no TensorFlow), reached through Debian's sshd started here as a non-daemon with a temporary host key and
authorized key. Its TMPDIR is a folder of the test's, so "nothing left behind" is checked by looking at it.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgeport.cli import main

ROOT = Path(__file__).resolve().parents[2]
SSHD = Path("/usr/sbin/sshd")
FAST = ["--runs", "5", "--warmup", "1", "--threads", "1", "--batch-sizes", "1", "--memory-repeats", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """sshd -D -e on a free loopback port, plus an ssh client config with one Host alias per scenario."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, _free_port()
        self.device_tmp = folder / "device-tmp"  # the device's TMPDIR: where its temporary folders go
        self.device_tmp.mkdir()
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        for key in ("host_key", "client_key", "other_host_key"):
            subprocess.run([*keygen, "-f", str(folder / key)], check=True)
        (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
        host_pub = " ".join((folder / "host_key.pub").read_text().split()[:2])
        other_pub = " ".join((folder / "other_host_key.pub").read_text().split()[:2])
        (folder / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        (folder / "known_hosts_wrong").write_text(f"[127.0.0.1]:{self.port} {other_pub}\n")
        (folder / "known_hosts_empty").write_text("")
        (folder / "sshd_config").write_text(textwrap.dedent(f"""\
            Port {self.port}
            ListenAddress 127.0.0.1
            HostKey {folder / 'host_key'}
            PidFile none
            AuthorizedKeysFile {folder / 'authorized_keys'}
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PermitRootLogin prohibit-password
            UsePAM no
            StrictModes no
            AcceptEnv TMPDIR
            """))
        self.refused_port = _free_port()
        self.silent = socket.socket()  # a "device" that accepts TCP and never speaks SSH: down, as ssh sees it
        self.silent.bind(("127.0.0.1", 0))
        self.silent.listen(8)
        hosts = {"device": ("known_hosts", self.port), "wrongkey": ("known_hosts_wrong", self.port),
                 "unknownkey": ("known_hosts_empty", self.port), "refused": ("known_hosts", self.refused_port),
                 "silent": ("known_hosts", self.silent.getsockname()[1])}
        blocks = [f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  UserKnownHostsFile {folder / kh}\n"
                  for alias, (kh, port) in hosts.items()]
        blocks.append(f"Host *\n  User {getpass.getuser()}\n  IdentityFile {folder / 'client_key'}\n"
                      f"  IdentitiesOnly yes\n  SetEnv TMPDIR={self.device_tmp}\n")
        self.ssh_config = folder / "ssh_config"
        self.ssh_config.write_text("".join(blocks))
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(folder / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.skip(f"sshd did not start: {self.proc.stderr.read().strip()[-300:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.skip("sshd did not listen within 15 s")

    def left_behind(self) -> list[str]:
        return sorted(p.name for p in self.device_tmp.iterdir())

    def stop(self) -> None:
        self.silent.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not SSHD.is_file() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs OpenSSH: /usr/sbin/sshd (apt-get install openssh-server) and the ssh client")
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        Path("/run/sshd").mkdir(mode=0o755)  # sshd's privilege-separation folder, as its service makes it
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def device_python(tmp_path_factory) -> str:
    """A virtual environment with only `pip install edgeport` from this source tree (no extras, no TensorFlow)."""
    base = tmp_path_factory.mktemp("device")
    src = base / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    for name in ("edgeport", "train", "export", "runtime"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"  # installed by this pip into that venv (pip --python): no ensurepip, seconds saved
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet",
                           "--disable-pip-version-check", str(src)], capture_output=True, text=True, timeout=900)
    if done.returncode:
        pytest.fail(f"pip install edgeport into the device venv failed:\n{done.stderr[-2000:]}")
    check = subprocess.run([str(py), "-c", "import tensorflow"], capture_output=True, cwd=base)
    assert check.returncode != 0, "the device venv must not have TensorFlow"
    return str(py)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A Python on the "device" without edgeport."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")


def test_bench_on_a_device_gives_its_figures_and_the_hosts_answers(sshd, device_python, tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    code = main(["bench", str(run), *FAST, "--device", "ssh://device", "--device-name", "venv",
                 "--device-python", device_python, "--ssh-config", str(sshd.ssh_config), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    host, device = report["devices"]
    assert host["local"] and host["info"]["cpus"] >= 1
    assert device["status"] == "ok" and device["error"] is None and device["host_key_verified"] is True
    info = device["info"]
    assert info["executable"] == device_python and info["packages"]["edgeport"] and info["cpu_model"]
    assert {"hostname", "os", "cpus", "python"} <= set(info) and "tensorflow" not in info["packages"]
    host_rows = {a["name"]: a for a in report["artifacts"]}
    assert [a["name"] for a in device["artifacts"]] == list(host_rows)
    for a in device["artifacts"]:
        assert a["status"] == "ok" and a["latency_ms"]["p50"] > 0 and a["latency_ms"]["n"] == 5
        assert a["benchmark"]["memory"]["baseline_mb"] > 0 and a["model_peak_mb"] is not None
        assert a["agreement_with_host"] == 1.0 and a["differs_from_host"] == 0  # same top-1 as the host
        assert a["accuracy"] == host_rows[a["name"]]["accuracy"]
    assert device["test_images"] == report["dataset"]["test_images"]
    md = (run / "report.md").read_text()
    assert "## Devices" in md and "| venv: p50 ms |" in md and "same answers as this machine" in md
    assert "<h2>Devices</h2>" in (run / "report.html").read_text()
    assert sshd.left_behind() == []


def test_failing_devices_give_reasons_while_the_others_complete(sshd, device_python, bare_python, artifacts,
                                                                  tmp_path, capsys):
    (tmp_path / "devices.toml").write_text(textwrap.dedent(f"""\
        [settings]
        python = "{device_python}"
        ssh_config = "{sshd.ssh_config}"
        [[device]]
        url = "ssh://device"
        name = "venv"
        [[device]]
        url = "ssh://refused"
        [[device]]
        url = "ssh://wrongkey"
        [[device]]
        url = "ssh://unknownkey"
        [[device]]
        url = "ssh://device"
        name = "no-edgeport"
        python = "{bare_python}"
        """))
    code = main(["bench", str(artifacts["tflite_int8"]), "--test-limit", "50", *FAST,
                 "--devices", str(tmp_path / "devices.toml"), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err  # one device succeeded
    devices = {d["name"]: d for d in json.loads(out.out)["devices"]}
    assert devices["venv"]["status"] == "ok"
    reasons = {name: devices[name]["error"] for name in ("refused", "wrongkey", "unknownkey", "no-edgeport")}
    assert "connection refused" in reasons["refused"]
    assert "does not match known_hosts" in reasons["wrongkey"]
    assert "not in known_hosts" in reasons["unknownkey"]
    assert "edgeport is not installed" in reasons["no-edgeport"] and "pip install edgeport" in reasons["no-edgeport"]
    assert all(devices[n]["status"] == "failed" for n in reasons)
    for name in reasons:  # each reason also on stderr, one line per device
        assert f"{name}: failed: {reasons[name]}" in out.err
    assert sshd.left_behind() == []


def test_no_device_succeeding_is_exit_1(sshd, artifacts, bare_python, capsys):
    code = main(["bench", str(artifacts["onnx_fp32"]), "--test-limit", "20", *FAST, "--device", "ssh://refused",
                 "--device", "ssh://device", "--device-python", bare_python, "--device-python", bare_python,
                 "--ssh-config", str(sshd.ssh_config)])
    assert code == 1
    err = capsys.readouterr().err
    assert "refused: failed: connection refused" in err and "device: failed: edgeport is not installed" in err


def test_insecure_host_key_is_accepted_and_said(sshd, device_python, artifacts, capsys):
    code = main(["bench", str(artifacts["tflite_int8"]), "--test-limit", "20", *FAST, "--device", "ssh://unknownkey",
                 "--device-python", device_python, "--ssh-config", str(sshd.ssh_config),
                 "--insecure-accept-host-key", "--json"])
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert code == 0 and report["devices"][1]["status"] == "ok"
    assert report["devices"][1]["host_key_verified"] is False and report["host_keys_verified"] is False
    assert "host keys are NOT verified" in out.err
    assert (sshd.folder / "known_hosts_empty").read_text() == ""  # nothing was added to the user's known hosts


def _device_payload(artifacts, folder: Path):
    """What bench_with_devices sends, for one file and four test images."""
    import numpy as np

    from edgeport.core.data import load_dataset
    from edgeport.remote import _payload

    np.savez(folder / "four.npz", x_test=np.zeros((4, 28, 28), np.uint8), y_test=np.zeros(4, np.int64))
    return _payload([("tflite_int8", artifacts["tflite_int8"])], load_dataset(folder / "four.npz", val_size=0))


def test_timeout_stops_the_device_and_removes_its_folder(sshd, device_python, artifacts, tmp_path):
    from edgeport.remote import RemoteConfig, bench_on_devices, parse_device
    from edgeport.runtime.bench import BenchConfig

    endless = BenchConfig(runs=10**9, warmup=0, threads=(1,), batch_sizes=(1,), memory_repeats=0)
    dev = parse_device("ssh://device", python=device_python, timeout_s=6)
    silent = parse_device("ssh://silent", python=device_python, timeout_s=6)
    t0 = time.monotonic()
    entries = bench_on_devices([dev, silent], _device_payload(artifacts, tmp_path), {}, endless,
                               RemoteConfig(ssh_config=str(sshd.ssh_config), connect_timeout_s=3), progress=False)
    assert time.monotonic() - t0 < 20
    assert entries[0]["status"] == "failed" and "timed out after 6 s" in entries[0]["error"]
    assert entries[1]["status"] == "failed" and "timed out" in entries[1]["error"]
    assert sshd.left_behind() == []


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working directory is in `folder` (the benchmark runs inside its temporary folder)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(folder) in os.readlink(proc / "cwd"):
                out.append(int(proc.name))
        except OSError:
            pass
    return out


def test_ctrl_c_stops_the_device_and_removes_its_folder(sshd, device_python, artifacts, tmp_path):
    script = tmp_path / "drive.py"
    script.write_text(textwrap.dedent(f"""\
        import json, sys
        from pathlib import Path
        from edgeport.remote import RemoteConfig, bench_on_devices, parse_device, _payload
        from edgeport.runtime.bench import BenchConfig, Interrupted
        payload = _payload([("tflite_int8", Path({str(artifacts["tflite_int8"])!r}))], None)
        dev = parse_device("ssh://device", python={device_python!r}, timeout_s=300)
        try:
            bench_on_devices([dev], payload, {{}}, BenchConfig(runs=10**9, warmup=0, threads=(1,), batch_sizes=(1,)),
                             RemoteConfig(ssh_config={str(sshd.ssh_config)!r}), progress=False)
        except Interrupted as exc:
            print(json.dumps(exc.partial["devices"][0]))
            sys.exit(130)
        """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(sshd.device_tmp.glob("edgeport-bench-*/.runner.pid")) or not _processes_in(sshd.device_tmp):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(1.0)  # the device benchmark is running now
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    entry = json.loads(out)
    assert entry["status"] == "interrupted" and entry["cleanup"].startswith("removed ")
    assert sshd.left_behind() == [] and _processes_in(sshd.device_tmp) == []


@pytest.mark.parametrize("argv, message", [
    (["--device", "pi@raspberrypi.local"], "is not a URL; expected ssh://[user@]host[:port]"),
    (["--device", "http://pi@raspberrypi.local"], "unknown scheme 'http'"),
    (["--device", "ssh://pi@host/some/path"], "(no path, password, query or fragment)"),
    (["--device", "ssh://pi@host:99999"], "Port out of range"),
    (["--device", "ssh://-oProxyCommand=x"], "is not a host name or address"),
    (["--device", "ssh://a", "--device", "ssh://a"], "two devices are named 'a'"),
    (["--device", "ssh://a", "--device-name", "x", "--device-name", "y"], "--device-name given 2 times for 1"),
    (["--device-name", "x"], "--device-name needs --device or --devices"),
    (["--devices", "{tmp}/colour.toml"], "[[device]] 1: unknown key 'colour'; expected one of: url, name, python"),
    (["--devices", "{tmp}/nourl.toml"], "url is missing"),
    (["--devices", "{tmp}/missing.toml"], "devices file not found"),
])
def test_bad_device_input_is_a_one_line_error(tmp_path, capsys, argv, message):
    (tmp_path / "colour.toml").write_text('[[device]]\nurl = "ssh://pi@host"\ncolour = "red"\n')
    (tmp_path / "nourl.toml").write_text('[[device]]\nname = "pi"\n')
    (tmp_path / "m.tflite").write_bytes(b"never read: the devices are checked first")
    code = main(["bench", str(tmp_path / "m.tflite"), *[a.replace("{tmp}", str(tmp_path)) for a in argv]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("edgeport: error:"), err
    assert message in err[0]
