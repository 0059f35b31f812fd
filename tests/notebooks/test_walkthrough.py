"""notebooks/walkthrough.ipynb runs top to bottom, headless, so it cannot rot."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "walkthrough.ipynb"


def test_walkthrough_executes(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tflite_micro")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("EDGEPORT_NOTEBOOK_RUN", str(tmp_path / "run"))  # the kernel inherits this environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed without outputs
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "Keras test accuracy" in text and "microcontroller:" in text and "EDGEPORT_ARENA_BYTES" in text
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 4  # samples, predictions, confusion matrix, real images
    manifest = (tmp_path / "run" / "manifest.json").read_text()
    assert '"c_array"' in manifest and (tmp_path / "run" / "pruned.keras").is_file()
