"""The one table of export targets. The CLI, the pipeline, recipes and the report read it by name.

A target is a small converter `fn(model, path, ctx) -> dict` that writes one file at `path` (a temporary
path: the caller renames it only after validation passes) and returns its conversion settings for the
manifest's lineage. Register one with `@register(...)`; an unknown name raises an error listing the valid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgeport.core.errors import ConfigError


@dataclass(frozen=True)
class Target:
    name: str  # e.g. "tflite_int8"; also the artifact's file stem
    format: str  # "tflite" | "onnx" | ...: which runtime backend opens it
    precision: str  # "float32", "int8", ...
    suffix: str  # ".tflite", ".onnx", ...
    description: str
    fn: Callable[..., dict[str, Any]]
    atol: float | None  # max |p - p_keras| allowed at validation; None: quantised, checked by top-1 only
    min_agreement: float = 0.9  # top-1 agreement with Keras on the validation sample, for quantised targets
    calibrated: bool = False  # its ranges come from calibration images (what --calibration-curve varies)


TARGETS: dict[str, Target] = {}
DEFAULT_TARGETS = ("tflite_fp32", "tflite_int8", "onnx_fp32")


def register(name: str, *, format: str, precision: str, suffix: str, description: str,
             atol: float | None, min_agreement: float = 0.9, calibrated: bool = False):
    def deco(fn):
        TARGETS[name] = Target(name, format, precision, suffix, description, fn, atol, min_agreement, calibrated)
        return fn

    return deco


def get_target(name: str) -> Target:
    _load_converters()
    name = name.replace("-", "_")  # the CLI accepts c-array as well as c_array
    if name not in TARGETS:
        raise ConfigError(f"unknown export target {name!r}; expected one of: {', '.join(sorted(TARGETS))}")
    return TARGETS[name]


def target_names() -> list[str]:
    _load_converters()
    return sorted(TARGETS)


def _load_converters() -> None:
    """Import the converter modules so their @register calls fill TARGETS (they import TF only on use)."""
    from edgeport.export import c_array, onnx_export, tflite_export, web_export  # noqa: F401
