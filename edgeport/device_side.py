"""What `edgeport.remote` runs on a device: this file's source is sent over SSH as `python -c` (it is not imported
there), so it runs whatever edgeport version the device has, or none. Standard library only.

    probe                    what the device is and whether edgeport is installed; makes the temporary folder
    run FOLDER SECONDS ARGS  unpack the tar on stdin into FOLDER, run `python -m edgeport bench ARGS` there with
                             FOLDER/tmp as its TMPDIR, stop it after SECONDS, and remove FOLDER however it ends
    cleanup FOLDER           stop a `run` in FOLDER (SIGTERM to the runner, which stops the benchmark's process
                             group) and remove FOLDER

The runner starts the benchmark in its own session, so the benchmark and its memory-measuring children form one
process group that can be stopped together. Each command prints one JSON line on stdout (`run`: the benchmark's
report); progress markers go to stderr.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

FOLDER_PREFIX = "edgeport-bench-"
COPIED = "edgeport-remote: copied"  # on stderr once the files are unpacked and the benchmark starts
PID_FILE = ".runner.pid"


def probe() -> dict:
    """Runs on any Python 3 (no dict unions, no match): an old system Python still gets a clear answer."""
    out = {"python": platform.python_version(), "executable": sys.executable}
    try:
        import edgeport
    except ImportError as exc:
        out.update(missing=str(exc), hostname=platform.node(), os=platform.platform())
        return out
    out["edgeport"] = getattr(edgeport, "__version__", "?")
    try:
        from edgeport.core.environment import machine_info
    except ImportError:
        out["too_old"] = True
        return out
    out.update(machine_info())
    out["dir"] = tempfile.mkdtemp(prefix=FOLDER_PREFIX)
    return out


def _stop(*_) -> None:
    raise SystemExit(143)


def run(folder: str, seconds: float, args: list[str]) -> int:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    child = None
    rc = 1
    try:
        os.chdir(folder)
        with open(PID_FILE, "w") as f:
            f.write(str(os.getpid()))
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
            tar.extractall(".", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        os.mkdir("tmp")  # the benchmark's own temporary files (onnxruntime writes one) stay in the folder
        print(COPIED, file=sys.stderr, flush=True)
        child = subprocess.Popen([sys.executable, "-m", "edgeport", "bench", *args], stdin=subprocess.DEVNULL,
                                 start_new_session=True, env=dict(os.environ, TMPDIR=os.path.join(folder, "tmp")))
        try:
            rc = child.wait(timeout=max(seconds, 1.0))
        except subprocess.TimeoutExpired:
            rc = 124
    finally:
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except OSError:
                pass
            child.wait()
        os.chdir("/")
        shutil.rmtree(folder, ignore_errors=True)
    return rc


def cleanup(folder: str) -> int:
    try:
        with open(os.path.join(folder, PID_FILE)) as f:
            os.kill(int(f.read().strip()), signal.SIGTERM)
    except (OSError, ValueError):
        pass  # no runner (it never started, or has finished): only the folder is left to remove
    for _ in range(50):  # the runner removes the folder itself once its benchmark has stopped
        if not os.path.isfile(os.path.join(folder, PID_FILE)):
            break
        time.sleep(0.1)
    shutil.rmtree(folder, ignore_errors=True)
    return 1 if os.path.exists(folder) else 0


def main(argv: list[str]) -> int:
    command = argv[0]
    if command == "probe":
        print(json.dumps(probe()))
        return 0
    if command == "run":
        return run(argv[1], float(argv[2]), argv[3:])
    if command == "cleanup":
        return cleanup(argv[1])
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
