"""Exporting again into a run folder: a refused recipe leaves the earlier export as it was; a new export removes
the report that described the files it replaces."""

import shutil

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


def test_a_new_export_removes_the_report_of_the_files_it_replaces(exported, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(exported, run)
    assert (run / "report.md").is_file() and (run / "model_explorer" / "tflite_int8.json").is_file()
    capsys.readouterr()
    assert main(["export", str(run), "--targets", "tflite_fp32"]) == 0
    assert "removed the earlier report.json, report.md, report.html, model_explorer/" in capsys.readouterr().err
    assert not any((run / n).exists() for n in ("report.json", "report.md", "report.html", "model_explorer"))
    assert main(["eval", str(run)]) == 0
    assert "tflite_fp32" in (run / "report.md").read_text() and not (run / "model_explorer").exists()
