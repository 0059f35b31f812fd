import subprocess
import sys
import textwrap

import pytest

from edgeport.core.errors import ModelFileError
from edgeport.runtime import load


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_missing_file(tmp_path, suffix):
    with pytest.raises(ModelFileError, match="not found"):
        load(tmp_path / f"nope{suffix}")


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_empty_file(tmp_path, suffix):
    (tmp_path / f"e{suffix}").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        load(tmp_path / f"e{suffix}")


@pytest.mark.parametrize("name", ["tflite_fp32", "tflite_int8", "onnx_fp32"])
def test_truncated_file(tmp_path, artifacts, name):
    src = artifacts[name]
    bad = tmp_path / src.name
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    with pytest.raises(ModelFileError, match=f"{bad.name}: not a valid"):
        load(bad)


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_file_that_is_not_a_model(tmp_path, suffix):
    p = tmp_path / f"notes{suffix}"
    p.write_text("these are my notes, not a model\n" * 20)
    with pytest.raises(ModelFileError, match="not a valid"):
        load(p)


def test_unknown_suffix(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown model format '.pt'.*expected one of .tflite, .onnx"):
        load(p)


def test_runtime_never_imports_tensorflow(artifacts, mnist_test):
    """Import and use the runtime with TensorFlow made unimportable, then check sys.modules."""
    images, labels = mnist_test
    code = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'tensorflow_model_optimization',
                                          'tf2onnx'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        import edgeport.runtime as rt
        from edgeport.core.data import load_dataset
        d = load_dataset(test_limit=20, train_limit=200, val_size=10)
        for p in {[str(p) for p in artifacts.values()]!r}:
            m = rt.load(p)
            ev = m.evaluate(d.test_images, d.test_labels)
            m.benchmark(runs=3, warmup=1)
        heavy = sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'))
        print('HEAVY', heavy)
        assert not heavy, heavy
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "HEAVY []" in res.stdout


def test_base_dependencies_exclude_tensorflow():
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert "tensorflow" not in base and "keras" not in base
    assert {"numpy", "onnxruntime", "ai-edge-litert", "pillow"} <= {d.split(">")[0].split("=")[0].lower()
                                                                    for d in project["dependencies"]}
