"""An RGB image folder through the CLI: train, export, eval of the run, eval of a loose file on the folder."""

import json

import numpy as np
import pytest

from edgeport.cli import main

pytest.importorskip("tensorflow")

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def colour_folder(root, n_train=24, n_test=8, size=16):
    """Noisy squares of three colours (the class is the colour), PATH/train/<class>/ and PATH/test/<class>/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for name, rgb in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                noise = rng.integers(-60, 60, (size, size, 3))
                pixels = np.clip(np.array(rgb) * rng.uniform(0.5, 1) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.{'jpg' if i % 4 == 0 else 'png'}")
    return root


def test_train_export_and_eval_on_an_image_folder(tmp_path, capsys):
    data, run = colour_folder(tmp_path / "colours"), tmp_path / "run"
    assert main(["train", "--model", "tiny", "--data", str(data), "--epochs", "1", "--out", str(run)]) == 0
    record = json.loads((run / "train.json").read_text())
    assert record["input_spec"]["labels"] == ["blue", "green", "red"] and record["input_spec"]["channels"] == 3
    assert record["dataset"]["kind"] == "folder" and set(record["dataset"]["files_sha256"]) == {"train/", "test/"}
    assert (record["dataset"]["train"], record["dataset"]["val"], record["dataset"]["test"]) == (65, 7, 24)

    assert main(["export", str(run), "--targets", "tflite_fp32,tflite_int8", "--calibration-size", "16"]) == 0
    assert main(["eval", str(run)]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["dataset"]["kind"] == "folder" and report["dataset"]["test_images"] == 24
    assert all(a["status"] == "ok" and a["agreement"] >= 0.9 for a in report["artifacts"])

    capsys.readouterr()
    file = run / "artifacts" / "tflite_int8.tflite"
    assert main(["eval", str(file), "--data", str(data), "--json"]) == 0
    loose = json.loads(capsys.readouterr().out)
    assert loose["dataset"]["test_images"] == 24 and 0 <= loose["artifacts"][0]["accuracy"] <= 1
    assert loose["artifacts"][0]["input_spec"]["labels"] == ["blue", "green", "red"]


def test_bad_image_in_a_folder_is_a_one_line_error(tmp_path, capsys):
    data = colour_folder(tmp_path / "colours", n_train=4, n_test=2)
    (data / "train" / "red" / "broken.png").write_bytes(b"not a png")
    assert main(["train", "--model", "tiny", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.png: not an image Pillow can read" in err[0] and "--skip-bad-images" in err[0]
    assert not list((tmp_path / "r").iterdir())  # nothing written
