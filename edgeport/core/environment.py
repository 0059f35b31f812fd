"""What a run records about the machine it ran on: package versions and usable CPUs."""

from __future__ import annotations

import os

PACKAGES = ("edgeport", "numpy", "tensorflow", "tf-keras", "keras", "tensorflow-model-optimization", "tf2onnx",
            "onnx", "onnxruntime", "ai-edge-litert")


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
