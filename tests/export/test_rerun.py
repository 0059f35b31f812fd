"""Exporting again into a run folder: a refused recipe leaves the earlier export as it was."""

import pytest

from edgeport.cli import main

pytest.importorskip("tensorflow")
pytest.importorskip("keras")


@pytest.fixture(scope="module")
def exported(raw_pixels, tmp_path_factory):
    """A run folder of the raw-pixel model (a Rescaling layer first) with one exported file and its report."""
    model, data = raw_pixels
    out = tmp_path_factory.mktemp("rerun") / "run"
    assert main(["export", "--model", str(model), "--data", str(data), "--out", str(out), "--targets",
                 "tflite_int8", "--calibration-size", "50"]) == 0
    assert main(["eval", str(out)]) == 0
    return out


def test_a_refused_recipe_leaves_the_earlier_manifest(exported, tmp_path, capsys):
    """QAT cannot quantise the Rescaling layer: the recipe is refused before any work, and verify still works."""
    recipe = tmp_path / "qat.toml"
    recipe.write_text('[[variant]]\nmethod = "qat"\ntargets = ["tflite_int8"]\n')
    before = (exported / "manifest.json").read_bytes()
    capsys.readouterr()
    assert main(["export", str(exported), "--recipe", str(recipe)]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("edgeport: error:")]
    assert "QAT cannot quantise layer(s) scale (Rescaling)" in line
    assert (exported / "manifest.json").read_bytes() == before
