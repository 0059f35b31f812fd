"""`edgeport predict`: text and JSON output, exit codes, one-line errors."""

import json
from pathlib import Path

from edgeport.cli import main

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "digits").iterdir())


def test_predict_prints_top3_per_image(seed_run, capsys):
    images = [str(p) for p in EXAMPLES[:3]]
    assert main(["predict", str(seed_run / "artifacts" / "tflite_int8.tflite"), *images]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line, path in zip(lines, EXAMPLES[:3], strict=True):
        assert line.startswith(f"{path}: {path.name[0]} ") and line.count("%") == 3


def test_predict_json(seed_run, capsys):
    assert main(["predict", str(seed_run / "artifacts" / "onnx_fp32.onnx"), str(EXAMPLES[-1]), "--json",
                 "--top", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    (pred,) = out["predictions"]
    assert pred["label"] == EXAMPLES[-1].name[0] and len(pred["top"]) == 5 and out["preprocess"] == "mnist"
    assert abs(sum(t["probability"] for t in pred["top"]) - 1) < 0.05


def test_predict_no_preprocess_on_mnist_and_drawn_images(seed_run, capsys):
    model = str(seed_run / "artifacts" / "tflite_fp32.tflite")
    mnist = next(p for p in EXAMPLES if "mnist" in p.name)
    drawn = next(p for p in EXAMPLES if "mnist" not in p.name)
    assert main(["predict", model, str(mnist), "--no-preprocess"]) == 0
    assert capsys.readouterr().out.startswith(f"{mnist}: {mnist.name[0]} ")
    assert main(["predict", model, str(drawn), str(mnist), "--no-preprocess"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edgeport: error: {drawn}: image is ") and "--no-preprocess" in err[0]
    assert captured.out.startswith(f"{mnist}: ")  # the good image still got its answer


def test_predict_bad_model_and_bad_flags(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "missing.tflite"), str(EXAMPLES[0])]) == 2
    assert "model file not found" in capsys.readouterr().err
    (tmp_path / "m.tflite").write_bytes(b"\0" * 64)
    assert main(["predict", str(tmp_path / "m.tflite"), str(EXAMPLES[0])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeport: error:") and len(err.strip().splitlines()) == 1
    assert main(["predict", str(EXAMPLES[0]), str(EXAMPLES[0])]) == 2  # an image where the model goes
    assert "unknown model format '.png'" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "m.tflite"), str(EXAMPLES[0]), "--top", "0"]) == 2
    assert "--top must be >= 1" in capsys.readouterr().err
