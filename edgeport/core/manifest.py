"""manifest.json: the run folder's record of every exported file. Written by export, read by everyone else.

Each artifact records its format, precision, path (relative to the manifest), sizes, sha256, I/O tensor
specs with quantisation parameters, and lineage: which model and training method, which conversion and
settings, which calibration set, and which command produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeport.core import files
from edgeport.core.errors import OutputError

MANIFEST = "manifest.json"
SCHEMA = 1


@dataclass
class Artifact:
    name: str
    format: str
    precision: str
    path: str  # relative to the run folder
    bytes: int
    gzip_bytes: int
    sha256: str
    inputs: list[dict]
    outputs: list[dict]
    lineage: dict[str, Any] = field(default_factory=dict)  # {"training": {...}, "conversion": {...}}
    validation: dict[str, Any] = field(default_factory=dict)  # what the post-write check measured
    metadata: dict[str, str] = field(default_factory=dict)  # what is embedded in the file itself
    sensitivity: list[dict] | None = None  # int8 files: per-layer error vs the float model, worst first

    def to_dict(self) -> dict:
        return asdict(self)


def write_manifest(run_dir: str | Path, artifacts: list[Artifact], **info: Any) -> Path:
    """Write manifest.json last, atomically: its presence means every file it lists was validated."""
    body = {"schema": SCHEMA, **info, "artifacts": [a.to_dict() for a in artifacts]}
    return files.write_json(Path(run_dir) / MANIFEST, body)


def read_manifest(run_dir: str | Path) -> dict:
    p = Path(run_dir) / MANIFEST
    if not p.is_file():
        raise OutputError(f"{run_dir}: no {MANIFEST} here; run `edgeport export` on this folder first")
    data = files.read_json(p, "manifest")
    if not isinstance(data, dict) or "artifacts" not in data:
        raise OutputError(f"{p}: not an edgeport manifest (no 'artifacts' list)")
    return data
