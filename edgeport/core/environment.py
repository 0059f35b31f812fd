"""What a run records about the machine it ran on: package versions, usable CPUs, and (for device reports) the
machine itself: host name, OS, CPU model."""

from __future__ import annotations

import os
import platform

PACKAGES = ("edgeport", "numpy", "tensorflow", "tf-keras", "keras", "tensorflow-model-optimization", "tf2onnx",
            "onnx", "onnxruntime", "ai-edge-litert")
RUNTIME_PACKAGES = ("edgeport", "numpy", "onnxruntime", "ai-edge-litert", "tflite-micro")  # what a device runs


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of `packages` (the ones that change numbers), skipping those not installed."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one, e.g. under taskset or a container)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_info() -> dict:
    """The machine a benchmark ran on, as a device report records it: names, OS, CPU, Python, runtime versions."""
    return {"hostname": platform.node(), "os": _os_name(), "arch": platform.machine(), "cpu_model": _cpu_model(),
            "board": _board(), "cpus": cpu_count(), "python": platform.python_version(),
            "packages": package_versions(RUNTIME_PACKAGES)}


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release()["PRETTY_NAME"] + f" (kernel {platform.release()})"
    except (OSError, KeyError, AttributeError):
        return platform.platform()


def _cpu_model() -> str:
    """x86's "model name" from /proc/cpuinfo; ARM boards name the core less often, so fall back to the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("model name", "cpu model", "processor name") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _board() -> str | None:
    """The board's own name where the firmware gives one (Raspberry Pi, Jetson, i.MX: the device tree)."""
    try:
        with open("/proc/device-tree/model", encoding="utf-8", errors="replace") as f:
            return f.read().strip("\0\n ") or None
    except OSError:
        return None
