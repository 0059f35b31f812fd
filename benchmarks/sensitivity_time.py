"""Benchmark (not a test): how long the per-layer sensitivity takes for every quantised file of the default MNIST model.

    .venv/bin/python benchmarks/sensitivity_time.py [--out /tmp/edgeport-sens-bench] [--epochs 2] [--qat-epochs 0.1]

Trains the `default` architecture briefly (12,000 images; the sensitivity's cost depends on the graph, not on how
well it was trained), exports the quantised files of the default recipe (the post-training ones from the float model,
and a QAT variant's tflite_int8 and onnx_qdq after a short fine-tune; pqat and cqat write the same graph as qat)
without sensitivity, then times `export/sensitivity.py` on each file as the export does: the Keras layer outputs
of its source model and the file's own, on 200 validation images. Prints one row per file and the total.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RECIPE = """
[[variant]]
method = "float"
targets = ["tflite_fp16", "tflite_dynamic_int8", "tflite_int8", "tflite_int8_float_io", "tflite_int16x8",
           "onnx_static_int8", "web_tflite_int8"]

[[variant]]
method = "qat"
epochs = {qat_epochs}
targets = ["tflite_int8", "onnx_qdq"]
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/edgeport-sens-bench")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--qat-epochs", type=float, default=0.1)
    args = ap.parse_args()
    from edgeport.core.data import DataConfig
    from edgeport.core.manifest import read_manifest
    from edgeport.core.run import RunFolder
    from edgeport.export.export import ExportConfig
    from edgeport.export.recipe import export_recipe, parse_recipe
    from edgeport.export.sensitivity import SENSITIVE_PRECISIONS, SENSITIVITY_IMAGES, keras_outputs, layer_sensitivity
    from edgeport.train.compress import load_model
    from edgeport.train.fit import TrainConfig, train

    try:
        import tomllib
    except ModuleNotFoundError:
        import tomli as tomllib

    out = Path(args.out)
    if not (out / "model.keras").is_file():
        train(TrainConfig(model="default", epochs=args.epochs, augment_shift=0,
                          data=DataConfig(train_limit=12000, val_size=1000, test_limit=2000)), out)
    recipe = parse_recipe(tomllib.loads(RECIPE.format(qat_epochs=args.qat_epochs)), "benchmark recipe")
    export_recipe(out, recipe, ExportConfig(calibration_size=100, sensitivity=False))
    run = RunFolder(out)
    images = run.spec.normalise(run.dataset().val_images[:SENSITIVITY_IMAGES])
    quantised = [a for a in read_manifest(out)["artifacts"] if a["precision"] in SENSITIVE_PRECISIONS]
    print(f"{'file':<24} {'precision':<13} {'layers':>6} {'seconds':>8}  worst layer (median-channel SQNR dB)")
    total = 0.0
    for a in quantised:
        source = a["lineage"]["training"].get("source_model") or run.model_path.name
        t0 = time.perf_counter()
        model = load_model(out / source)
        rows = layer_sensitivity(out / a["path"], model, images, keras_outputs(model, images))
        seconds = time.perf_counter() - t0
        total += seconds
        worst = f"{rows[0]['layer']} ({rows[0]['sqnr_db']})" if rows else "-"
        print(f"{a['name']:<24} {a['precision']:<13} {len(rows):>6} {seconds:>8.2f}  {worst}")
    print(f"total for {len(quantised)} quantised files: {total:.1f} s ({len(images)} validation images each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
