"""Benchmark (not a test): is the QAT ONNX file (qat_onnx_qdq) as small and as fast as onnx_static_int8?

    .venv/bin/python benchmarks/qat_onnx.py [--run DIR] [--repeats 5] [--runs 500]

DIR is a run folder holding qat_onnx_qdq, qat_tflite_int8 and onnx_static_int8 (default
/tmp/edgeport-qat-bench; made once when it has no manifest: `edgeport run --quick` with a two-variant recipe,
float -> onnx_static_int8 and qat -> tflite_int8 + onnx_qdq, about a minute on 2 cores). Prints, from one run:
  - bytes of both ONNX files and their ratio (target <= 1.15);
  - batch-1 p50 latency, 1 thread, edgeport's runtime.bench: the median over `--repeats` rounds, the two files
    taking turns within each round, of each round's p50 over `--runs` calls; and the ratio (target <= 1.2);
  - which layers onnxruntime still runs in float after its graph optimisations (none when fused);
  - top-1 agreement of qat_onnx_qdq with qat_tflite_int8 on the run's test images (target >= 99.5%).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RECIPE = """
[[variant]]
method = "float"
targets = ["onnx_static_int8"]

[[variant]]
method = "qat"
targets = ["tflite_int8", "onnx_qdq"]
"""
FILES = ("qat_onnx_qdq", "onnx_static_int8")


def make_run(run: Path) -> None:
    from edgeport.export.recipe import load_recipe
    from edgeport.pipeline import BenchConfig, quick_configs, run_pipeline

    print(f"making {run} (edgeport run --quick with a float + qat recipe)", file=sys.stderr)
    train_cfg, export_cfg, _ = quick_configs()
    with tempfile.TemporaryDirectory() as tmp:
        recipe_path = Path(tmp) / "qat.toml"
        recipe_path.write_text(RECIPE)
        run_pipeline(run, train_cfg, export_cfg, BenchConfig(runs=1, warmup=0, threads=(1,), batch_sizes=(1,),
                                                              throughput_runs=1, overhead_runs=1, memory_repeats=0),
                     recipe=load_recipe(recipe_path))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("/tmp/edgeport-qat-bench"))
    p.add_argument("--repeats", type=int, default=5, help="rounds; the figure is the median of the rounds' p50")
    p.add_argument("--runs", type=int, default=500, help="timed batch-1 calls per file and round")
    args = p.parse_args()

    from edgeport.core.manifest import read_manifest
    from edgeport.core.run import RunFolder
    from edgeport.export.qdq_fuse import float_layers_after_optimisation
    from edgeport.runtime import load
    from edgeport.runtime.bench import BenchConfig, benchmark_file

    if not (args.run / "manifest.json").is_file():
        make_run(args.run)
    arts = {a["name"]: a for a in read_manifest(args.run)["artifacts"]}
    missing = [n for n in (*FILES, "qat_tflite_int8") if n not in arts]
    if missing:
        sys.exit(f"{args.run}: no {', '.join(missing)} in the manifest; make it with the recipe in this script")
    paths = {n: args.run / arts[n]["path"] for n in (*FILES, "qat_tflite_int8")}

    cfg = BenchConfig(runs=args.runs, warmup=50, threads=(1,), batch_sizes=(1,), throughput_runs=1, overhead_runs=1,
                      memory_repeats=0)
    p50s: dict[str, list[float]] = {n: [] for n in FILES}
    for r in range(args.repeats):
        for name in FILES if r % 2 == 0 else FILES[::-1]:
            p50s[name].append(benchmark_file(paths[name], cfg=cfg)["by_threads"][0]["latency_ms"]["p50"])
    p50 = {n: float(np.median(v)) for n, v in p50s.items()}
    size = {n: paths[n].stat().st_size for n in FILES}

    images = RunFolder(args.run).dataset().test_images
    qdq, tfl = (load(paths[n]).predict(images).argmax(1) for n in ("qat_onnx_qdq", "qat_tflite_int8"))
    agree = int((qdq == tfl).sum())

    print(f"run: {args.run}  (1 thread, batch 1, {args.repeats} rounds of {args.runs} calls)")
    for n in FILES:
        floats = float_layers_after_optimisation(paths[n].read_bytes())
        print(f"{n:18s} {size[n]:>9,} B   p50 {p50[n]:.4f} ms (rounds: "
              f"{', '.join(f'{v:.4f}' for v in p50s[n])})   float layers after ORT optimisation: {floats or 'none'}")
    print(f"bytes ratio   qat_onnx_qdq / onnx_static_int8 = {size['qat_onnx_qdq'] / size['onnx_static_int8']:.3f}"
          "  (target <= 1.15)")
    print(f"latency ratio qat_onnx_qdq / onnx_static_int8 = {p50['qat_onnx_qdq'] / p50['onnx_static_int8']:.3f}"
          "  (target <= 1.2)")
    print(f"top-1 agreement qat_onnx_qdq vs qat_tflite_int8: {agree}/{len(images)} = {agree / len(images):.2%}"
          "  (target >= 99.5%)")


if __name__ == "__main__":
    main()
