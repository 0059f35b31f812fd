"""Without --ray nothing imports Ray: only edgeport/scale.py names it, and a local export + eval runs with Ray made
unimportable. These tests need no Ray installed."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_only_the_scale_module_imports_ray():
    found = []
    for folder in ("edgeport", "train", "export", "runtime"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "ray"]
    assert found and all(f.startswith("edgeport/scale.py") for f in found), found


def test_a_local_recipe_export_and_eval_never_import_ray(tiny_run, tmp_path):
    pytest.importorskip("tensorflow_model_optimization")
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "train.json", "reference.npz"):
        shutil.copy(tiny_run / name, run / name)
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[variant]]\nmethod = "float"\ntargets = ["tflite_fp32"]\n')
    code = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] == 'ray':
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        from edgeport.cli import main
        assert main(["export", {str(run)!r}, "--recipe", {str(recipe)!r}, "--calibration-size", "16"]) == 0
        assert main(["eval", {str(run)!r}]) == 0
        print("RAY", sorted(k for k in sys.modules if k.split('.')[0] == 'ray'))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "RAY []" in res.stdout
