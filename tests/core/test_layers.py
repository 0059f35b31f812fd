"""The house's floors: the ground floor (edgeport.core) imports no stage and no roof module, and the TF-free
runtime stands on the ground floor only. Read from the source, so a function-level import counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("edgeport.train", "edgeport.export", "edgeport.runtime")
ROOF = ("edgeport.cli", "edgeport.pipeline", "edgeport.serve", "edgeport.verify", "edgeport.remote", "edgeport.ssh",
        "edgeport.device_side")


def imported_modules(folder: Path) -> dict[str, set[str]]:
    """file -> every module it imports (top-level or inside functions)."""
    out = {}
    for path in sorted(folder.rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = names
    return out


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{file} imports {m}" for file, mods in imported_modules(ROOT / folder).items() for m in sorted(mods)
            if any(m == f or m.startswith(f + ".") for f in forbidden)]


def test_ground_floor_imports_no_stage_and_no_roof():
    assert offenders("edgeport/core", STAGES + ROOF) == []


@pytest.mark.parametrize("forbidden", [("edgeport.train", "edgeport.export"), ROOF,
                                       ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization",
                                        "tf2onnx")])
def test_runtime_stands_on_the_ground_floor_only(forbidden):
    assert offenders("runtime", forbidden) == []


def test_train_and_export_do_not_import_the_roof():
    assert offenders("train", ROOF) + offenders("export", ROOF) == []
