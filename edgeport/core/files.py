"""The one place files are written: atomically (temp file in the same folder, then rename).

A crash or Ctrl-C mid-write leaves at most a hidden `.partial` file, never a file with the final
name that looks valid but is not. Work that writes several files (one recipe variant) writes them into a hidden
staging folder first and moves them in only once all of them are complete (`staging_dir`, `commit_staged`).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeport.core.errors import OutputError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` if needed and prove it is writable, or raise OutputError naming it."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".edgeport-write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {p}: {exc.strerror or exc}") from None
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that check it are happy);
    rename it onto `path` only if the block succeeds and the file exists."""
    final = Path(path)
    ensure_writable_dir(final.parent)
    tmp = final.with_name(f".{final.stem}.partial-{uuid.uuid4().hex[:8]}{final.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"writer produced no file for {final}")
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def staging_dir(parent: str | os.PathLike, label: str) -> Iterator[Path]:
    """A hidden folder `parent/.staging-<label>-<random>` for one task's outputs, laid out like `parent`; removed on
    leaving the block whatever happened, so an interrupted task leaves nothing behind."""
    stage = ensure_writable_dir(parent) / f".staging-{label}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def commit_staged(stage: str | os.PathLike, dest: str | os.PathLike) -> list[str]:
    """Move every file under `stage` to the same relative path under `dest` (a rename each: the staging folder lives
    in `dest`, on the same filesystem); return the relative paths moved."""
    stage, dest = Path(stage), Path(dest)
    moved = []
    for src in sorted(p for p in stage.rglob("*") if p.is_file()):
        rel = src.relative_to(stage)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest / rel)
        moved.append(rel.as_posix())
    return moved


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputError(f"{p}: {what} not found") from None
    except (OSError, ValueError) as exc:
        raise OutputError(f"{p}: not a readable {what} ({exc})") from None


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder (a SavedModel): each file's relative path and sha256, in sorted order."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(p)
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(f.relative_to(p).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def gzip_size(path: str | os.PathLike) -> int:
    """Size after gzip -9: what a pruned model costs over the air, where zeros compress away."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
