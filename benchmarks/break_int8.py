"""Benchmark (not a test): a model full-int8 breaks, and what `--max-drop 1` does about it, in TFLite and ONNX.

    .venv/bin/python benchmarks/break_int8.py [--out /tmp/edgeport-break-bench] [--max-drop 1]

Writes the model of examples/break_int8.py (a trained Keras 3 MNIST CNN plus a huge constant channel the next layer
ignores), imports it as `edgeport export --model` does (full MNIST test set, 5,000 validation images), then prints,
for tflite_int8 and onnx_static_int8:
  plain     full int8 (written by the converter directly: the export's validation gate would refuse it), its test
            accuracy, and its sensitivity table's worst layers (median-channel and whole-tensor SQNR)
  budgeted  the export with --max-drop: the layers kept in float, the int8 share of MACs, the validation drop and
            the test accuracy (from `edgeport eval`)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("tflite_int8", "onnx_static_int8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/edgeport-break-bench")
    ap.add_argument("--max-drop", default="1")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = out / "broken.keras"
    if not model.is_file():
        subprocess.run([sys.executable, str(ROOT / "examples" / "break_int8.py"), str(model)], check=True)
    run = out / "run"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgeport", "export", "--model", str(model), "--out", str(run),
                    "--targets", ",".join(TARGETS), "--max-drop", args.max_drop], check=True)
    export_s = time.perf_counter() - t0
    subprocess.run([sys.executable, "-m", "edgeport", "eval", str(run)], check=True, stdout=subprocess.DEVNULL)
    plain = _plain(run)
    report = json.loads((run / "report.json").read_text())
    print(f"\nreference (Keras, float): test accuracy {report['reference']['accuracy']:.2%}")
    for row in report["artifacts"]:
        conv = row["lineage"]["conversion"]
        b = conv["budget"]
        p = plain[row["name"]]
        print(f"\n{row['name']}")
        print(f"  plain full int8: test accuracy {p['accuracy']:.2%}; validation drop {b['tries'][0]['drop']:.2f} "
              "points; worst layers (median-channel SQNR dB / whole-tensor SQNR dB):")
        for r in p["sensitivity"][:4]:
            print(f"    {r['layer']:<16} {r['op']:<16} {r['sqnr_db']:>7.2f} / {r['tensor_sqnr_db']:>7.2f}")
        print(f"  --max-drop {args.max_drop}: kept in float {conv['kept_float']}, int8 share of MACs "
              f"{conv['int8_mac_share']:.2%}, validation drop {b['validation_drop']:.2f} points on {b['images']} "
              f"{b['split']} images ({len(b['tries'])} files measured), test accuracy {row['accuracy']:.2%}")
    print(f"\nexport with the budget, both targets: {export_s:.1f} s (import and sensitivity included)")
    return 0


def _plain(run: Path) -> dict:
    """Full-int8 files of the run's model, written by the converters directly, with test accuracy and sensitivity."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import numpy as np

    from edgeport.core.run import RunFolder
    from edgeport.export.export import ExportConfig, ExportContext
    from edgeport.export.sensitivity import layer_sensitivity
    from edgeport.export.targets import get_target
    from edgeport.runtime import load
    from edgeport.train.compress import load_model
    from edgeport.train.tf import import_tf

    folder = RunFolder(run)
    model = load_model(folder.model_path)
    ctx = ExportContext(tf=import_tf()[0], cfg=ExportConfig(), run=folder)
    data = folder.dataset()
    val = folder.spec.normalise(data.val_images[:200])
    found = {}
    for name in TARGETS:
        target = get_target(name)
        path = run / f"plain_{name}{target.suffix}"
        target.fn(model, path, ctx)
        probs = load(path).predict(data.test_images)
        found[name] = {"accuracy": float((np.argmax(probs, 1) == data.test_labels).mean()),
                       "sensitivity": layer_sensitivity(path, model, val)}
    return found


if __name__ == "__main__":
    raise SystemExit(main())
