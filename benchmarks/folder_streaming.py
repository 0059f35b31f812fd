"""Benchmark (not a test): peak memory of evaluating a large image folder, streamed vs loaded into memory.

    .venv/bin/python benchmarks/folder_streaming.py [--images 100000] [--size 32] [--dir /tmp/edgeport-folder-bench]

Builds (once; reused when it is already there) PATH/test/<class>/*.png of random RGB pixels, then measures in
two fresh processes each, so each peak RSS is its own:
  stream   load_dataset + Model.evaluate of the lazy test split (what `edgeport eval` does)
  memory   the same, after np.asarray(test split): every image decoded and held at once
The model is a hand-built ONNX file (mean colour -> MatMul -> softmax): tiny, so the figures are the data's.
Peak RSS is the kernel's ru_maxrss of the child process; times are wall-clock seconds of one run each.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def build(root: Path, images: int, size: int, classes: int) -> None:
    from PIL import Image

    done = root / f".complete-{images}-{size}-{classes}"
    if done.is_file():
        return
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(images):
        folder = root / "test" / f"class{i % classes:02d}"
        if i < classes:
            folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:07d}.png")
        if i % 10000 == 9999:
            print(f"  wrote {i + 1:,} images ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    done.touch()


def model_file(path: Path, size: int, classes: int) -> Path:
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [3, classes], np.random.default_rng(0).normal(
        size=3 * classes).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["m", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["p"])],
        "mean_colour", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", classes])], initializer=[w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def measure(mode: str, root: Path, model: Path) -> dict:
    """Runs in the child process: load the folder, evaluate, report peak RSS and times."""
    from edgeport.core.data import DataConfig, load_dataset
    from edgeport.runtime import load

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    m = load(model)
    base = peak_mb()
    t0 = time.perf_counter()
    data = load_dataset(DataConfig(path=str(root)))
    t_load = time.perf_counter() - t0
    images = data.test_images
    t1 = time.perf_counter()
    if mode == "memory":
        images = np.asarray(images)
    ev = m.evaluate(images, data.test_labels)
    t_eval = time.perf_counter() - t1
    return {"mode": mode, "images": len(data.test_labels), "peak_rss_mb": round(peak_mb(), 1),
            "rss_before_load_mb": round(base, 1), "load_s": round(t_load, 1), "evaluate_s": round(t_eval, 1),
            "accuracy": round(ev.accuracy, 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--size", type=int, default=32, help="side of the square RGB images")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--dir", type=Path, default=Path("/tmp/edgeport-folder-bench"))
    p.add_argument("--measure", choices=("stream", "memory"), help=argparse.SUPPRESS)
    args = p.parse_args()
    model = args.dir / "mean_colour.onnx"
    if args.measure:
        print(json.dumps(measure(args.measure, args.dir, model)))
        return
    print(f"building {args.images:,} {args.size}x{args.size} RGB PNGs in {args.dir} (reused if present)",
          file=sys.stderr)
    build(args.dir, args.images, args.size, args.classes)
    model_file(model, args.size, args.classes)
    rows = []
    for mode in ("stream", "memory"):
        out = subprocess.run([sys.executable, __file__, "--measure", mode, "--dir", str(args.dir), "--images",
                              str(args.images), "--size", str(args.size)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    decoded_mb = args.images * args.size * args.size * 3 / 2**20
    print(f"{args.images:,} images of {args.size}x{args.size}x3 = {decoded_mb:.0f} MiB decoded uint8")
    print(f"{'mode':<8} {'peak RSS MiB':>12} {'before load':>12} {'load s':>7} {'evaluate s':>11}")
    for r in rows:
        print(f"{r['mode']:<8} {r['peak_rss_mb']:>12.1f} {r['rss_before_load_mb']:>12.1f} {r['load_s']:>7.1f} "
              f"{r['evaluate_s']:>11.1f}")
    s, m = rows
    print(f"streamed peak is {s['peak_rss_mb'] / m['peak_rss_mb']:.2f}x the in-memory peak "
          f"({m['peak_rss_mb'] - s['peak_rss_mb']:.0f} MiB less); same accuracy: {s['accuracy'] == m['accuracy']}")


if __name__ == "__main__":
    main()
