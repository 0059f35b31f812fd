"""Turn measurements into report.json, report.md, report.html and a terminal table. No TensorFlow.

report.html (report_html.py) embeds its plots and reloads the test images for the disagreement grid.
"""

from __future__ import annotations

from pathlib import Path

from edgeport.core import files

COLUMNS = [  # (header, key, format): the one definition of the table, used by the terminal and markdown
    ("artifact", "name", "{}"),
    ("format", "format", "{}"),
    ("precision", "precision", "{}"),
    ("size KB", "bytes", "{:.1f}"),
    ("gzip KB", "gzip_bytes", "{:.1f}"),
    ("accuracy", "accuracy", "{:.2%}"),
    ("agreement", "agreement", "{:.2%}"),
    ("max |dp|", "max_abs_diff", "{:.1e}"),
    ("p50 ms", "p50", "{:.3f}"),
    ("p99 ms", "p99", "{:.3f}"),
    ("model MB", "model_peak_mb", "{:.2f}"),
    ("GMAC/s", "gmacs_per_s", "{:.2f}"),
    ("best img/s", "best_images_per_s", "{:,.0f}"),
]
LATENCY_KEYS = ("p50", "p99")  # table columns read from the row's latency_ms

BENCH_HEADERS = ["artifact", "threads", "load ms", "first ms", "mean ms", "std", "p50", "p90", "p95", "p99",
                 "overhead x", "predict x", "img/s by batch", "MACs", "GMAC/s", "model MB", "spread MB",
                 "baseline MB"]
BENCH_NOTE = ("Latency: batch 1 after warm-up, ms. overhead x = edgeport's engine call / the raw engine call "
              "(LiteRT set_tensor+invoke+get_tensor, onnxruntime run), p50 of interleaved calls, target <= 1.05; "
              "predict x = the full Model.predict (image scaling, quantisation, softmax check) / the raw call. "
              "MACs per image from the graph (dense). GMAC/s = MACs / p50. model MB = the model's own peak memory "
              "at batch 1: peak resident memory of a fresh process that loads the file and runs it, minus the same "
              "process without a model (baseline MB: Python, numpy, the runtime and its engine); medians of the "
              "repeats, spread MB = max - min over them; measured with the first thread count. TFLM rows: the "
              "tensor arena TFLM recorded (exact; the model itself stays in flash).")


def _cells(row: dict) -> list[str]:
    out = []
    for _, key, fmt in COLUMNS:
        value = (row.get("latency_ms") or {}).get(key) if key in LATENCY_KEYS else row.get(key)
        if value is None:
            out.append("-" if row.get("status", "ok") == "ok" else row.get("status", "-"))
        elif key in ("bytes", "gzip_bytes"):
            out.append(fmt.format(value / 1024))
        else:
            out.append(fmt.format(value))
    return out


def reference_row(report: dict) -> list[str]:
    ref = report.get("reference") or {}
    row = {"name": "reference (Keras)", "format": "keras", "precision": "float32", "bytes": ref.get("bytes"),
           "gzip_bytes": ref.get("gzip_bytes"), "accuracy": ref.get("accuracy"), "agreement": 1.0,
           "max_abs_diff": 0.0}
    return _cells(row)


def summary_line(report: dict) -> str:
    ref = report.get("reference") or {}
    ds = report.get("dataset") or {}
    acc = ref.get("accuracy")
    return (f"Test set: {ds.get('test_images', '?')} images from {ds.get('source', '?')}"
            f"{' (a subset)' if ds.get('subset') else ''}. "
            + (f"Reference Keras accuracy: {acc:.2%}. " if acc is not None else "")
            + "Agreement = share of test images with the same top-1 class as the Keras model; max |dp| = "
            "largest probability difference. Latency: batch 1, after warm-up, first thread count measured.")


def _f(v, fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def bench_rows(report: dict) -> list[list[str]]:
    """One row per artifact and thread count: the benchmark detail table (markdown and HTML)."""
    out = []
    for r in report.get("artifacts", []):
        b = r.get("benchmark") or {}
        macs = (b.get("macs") or {}).get("macs")
        mem = b.get("memory") or {}
        for k, e in enumerate(b.get("by_threads", [])):
            lat = e.get("latency_ms") or {}
            ov = e.get("overhead") or {}
            tput = ", ".join(f"{t['batch']}: " + (f"{t['images_per_s']:,.0f}" if t.get("images_per_s") else
                                                  "n/a" if t.get("note") else "-") for t in e.get("throughput", []))
            out.append([r["name"] + (" (interrupted)" if b.get("interrupted") else ""), str(e.get("threads")),
                        _f(e.get("load_ms"), "{:.1f}"), _f(e.get("first_ms")), _f(lat.get("mean")),
                        _f(lat.get("std")), _f(lat.get("p50")), _f(lat.get("p90")), _f(lat.get("p95")),
                        _f(lat.get("p99")), _f(ov.get("ratio")), _f(ov.get("predict_ratio"), "{:.2f}"), tput,
                        _f(macs, "{:,}"), _f(e.get("gmacs_per_s"), "{:.2f}")]
                       + ([_memory_cell(mem), _f(mem.get("spread_mb"), "{:.2f}"), _f(mem.get("baseline_mb"), "{:.1f}")]
                          if k == 0 else ["", "", ""]))
    return out


def _memory_cell(mem: dict) -> str:
    if mem.get("arena_bytes") is not None:
        return f"{mem['model_peak_mb']:.3f} (arena)"
    return _f(mem.get("model_peak_mb"), "{:.2f}") if not mem.get("error") else "failed"


def bench_where(report: dict) -> str:
    """Which machine measured every benchmark of the report (they run on one, never mixed), as a sentence."""
    w = report.get("bench_executor") or {}
    if not w:
        return ""
    node = f", Ray node {w['node_id'][:12]}" if w.get("node_id") else ""
    cpus = f", {w['cpus']} CPUs" if w.get("cpus") else ""
    return f" All measured on one machine: {w.get('host')} ({w.get('kind', 'local')}{node}{cpus})."


DELTA_HEADERS = ["artifact", "fidelity vs", "change (points)", "95% CI", "only ref right", "only file right",
                 "McNemar p", "significant"]


def delta_note(report: dict) -> str:
    """What the change table means and the smallest change this test set can resolve."""
    res = (report.get("reference") or {}).get("resolvable_points")
    n = (report.get("dataset") or {}).get("test_images", "?")
    return ("Compression cost: each file's accuracy change against the Keras reference, in percentage points, "
            "with a 95% paired bootstrap interval over test images (seeded) and McNemar's exact test on the "
            "images only one of them gets right. Conversion fidelity (agreement, max |dp|) is measured against "
            "the model each file was converted from: the fine-tuned variant's own Keras model, else the reference."
            + (f" On {n} test images no change smaller than {res:.2f} points can be significant (p < 0.05): "
               "smaller differences between rows are noise, not a ranking." if res is not None else ""))


def delta_rows(report: dict) -> list[list[str]]:
    """One row per evaluated artifact: its accuracy change against the reference with CI and p-value."""
    out = []
    for r in report.get("artifacts", []):
        d = r.get("delta")
        if not d:
            continue
        source = "variant" if (r.get("lineage") or {}).get("source_predictions") else "reference"
        out.append([r["name"], source, f"{d['delta_points']:+.2f}", f"[{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]",
                    str(d["only_a"]), str(d["only_b"]), f"{d['p_value']:.2g}", "yes" if d["significant"] else "no"])
    return out


def curve_note(report: dict) -> str:
    """What the calibration-size table and plot show."""
    c = report.get("calibration_curve") or {}
    ref = c.get("reference_accuracy")
    return (f"Accuracy on {c.get('images', '?')} validation images (not the test set) of the reference model converted "
            f"with each number of calibration images from the {c.get('calibration_source', '?')} split; ONNX "
            f"calibration method {c.get('method', '?')}, TFLite always its absolute min/max."
            + (f" The Keras reference scores {ref:.2%} there." if ref is not None else "")
            + (f" One image is {100 / c['images']:.2f} points on this split." if c.get("images")
               else "")
            + "".join(f" Note: {n}." for n in c.get("notes") or []))


def curve_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """(headers, one row per target with its accuracy at each calibration size) or ([], []) without a curve."""
    c = report.get("calibration_curve") or {}
    if not c.get("points"):
        return [], []
    sizes = c["sizes"]
    acc = {(p["target"], p["size"]): p["accuracy"] for p in c["points"]}
    rows = [[t] + [_f(acc.get((t, n)), "{:.2%}") for n in sizes] for t in c["targets"]]
    return ["target"] + [f"{n} images" for n in sizes], rows


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def reference_rows(report: dict) -> list[list[str]]:
    """The Keras reference's table row, or none when there is no reference (loose files)."""
    return [reference_row(report)] if (report.get("reference") or {}).get("accuracy") is not None else []


def to_markdown(report: dict) -> str:
    lines = [f"# edgeport report: {report.get('run', '')}", "", summary_line(report), ""]
    if report.get("notes"):
        lines += [f"> note: {n}" for n in report["notes"]] + [""]
    lines += _md_table([h for h, _, _ in COLUMNS], reference_rows(report) + [_cells(r) for r in
                                                                             report.get("artifacts", [])])
    if delta_rows(report):
        lines += ["", "## Accuracy change vs the reference", "", delta_note(report), ""]
        lines += _md_table(DELTA_HEADERS, delta_rows(report))
    headers, rows = curve_rows(report)
    if rows:
        lines += ["", "## Calibration size", "", curve_note(report), ""] + _md_table(headers, rows)
    failed = [r for r in report.get("artifacts", []) if r.get("status", "ok") != "ok"]
    if failed:
        lines += ["", "## Failures", ""] + [f"- **{r['name']}**: {r.get('error', r['status'])}" for r in failed]
    if bench_rows(report):
        lines += ["", "## Benchmark", "", BENCH_NOTE + bench_where(report), ""]
        lines += _md_table(BENCH_HEADERS, bench_rows(report))
        notes = {t["note"] for r in report.get("artifacts", []) for e in (r.get("benchmark") or {}).get(
            "by_threads", []) for t in e.get("throughput", []) if t.get("note")}
        lines += [""] + [f"- throughput n/a: {n}" for n in sorted(notes)] if notes else []
    fid = report.get("fidelity") or {}
    if fid.get("names"):
        names = fid["names"]
        lines += ["", "## Fidelity", "", "Pairwise top-1 agreement (share of test images):", ""]
        lines += _md_table([""] + names, [[n] + [f"{v:.2%}" for v in row]
                                          for n, row in zip(names, fid["pairwise_agreement"], strict=True)])
        ok = [r for r in report.get("artifacts", []) if r.get("per_class_accuracy")]
        if ok:
            lines += ["", "Per-class accuracy:", ""]
            lines += _md_table(["artifact"] + [str(c) for c in range(len(ok[0]["per_class_accuracy"]))],
                               [[r["name"]] + [f"{v:.1%}" if v == v else "-" for v in r["per_class_accuracy"]]
                                for r in ok])
        dis = fid["disagreements"]
        lines += ["", f"Images on which the files disagree: **{dis['count']}** ({dis.get('all_wrong', 0)} fool every "
                  "file). Test-set indices" + (" (first ones)" if dis["truncated"] else "") + ": "
                  + (", ".join(str(i) for i in dis["indices"][:200]) or "none")
                  + (" ..." if len(dis["indices"]) > 200 else "") + ". Plots and the image grid: report.html."]
    lines += micro_lines(report)
    from edgeport.runtime import report_quant

    lines += report_quant.markdown_lines(report)
    from edgeport.runtime.report_devices import markdown_lines

    lines += markdown_lines(report)
    if report.get("environment"):
        lines += ["", "## Environment", ""] + [f"- {k}: {v}" for k, v in report["environment"].items()]
    return "\n".join(lines) + "\n"


def micro_lines(report: dict) -> list[str]:
    """The microcontroller section: flash, the tensor arena TFLM recorded, and accuracy under TFLM vs LiteRT."""
    rows = [r for r in report.get("artifacts", []) if "arena_bytes" in ((r.get("lineage") or {}).get("conversion")
                                                                          or {})]
    if not rows:
        return []
    litert = {r["name"]: r.get("accuracy") for r in report.get("artifacts", []) if r.get("format") == "tflite"}
    out = []
    for r in rows:
        c = r["lineage"]["conversion"]
        ref = litert.get(r["name"].replace("c_array", "tflite_int8"))
        acc = r.get("accuracy")
        delta = f"{(acc - ref) * 100:+.2f} pt" if acc is not None and ref is not None else "-"
        out.append([r["name"], f"{c['flash_bytes']:,}", f"{c['arena_bytes']:,}", f"{c.get('arena_min_bytes', 0):,}",
                    ", ".join(c.get("ops", [])), f"{acc:.2%}" if acc is not None else r.get("status", "-"), delta])
    note = ("Flash = the model bytes in the C array; arena = what TFLM's RecordingMicroAllocator recorded after one "
            "inference (reference kernels, on the host); smallest = bisection check. Accuracy runs the C array's "
            "bytes in TFLM, compared with the same int8 model in LiteRT.")
    return ["", "## Microcontroller (TFLM)", "", note, ""] + _md_table(
        ["artifact", "flash bytes", "arena bytes", "smallest arena", "ops", "TFLM accuracy", "vs LiteRT int8"], out)


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgeport: {report.get('run', '')}")
    for header, key, _ in COLUMNS:
        table.add_column(header, justify="left" if key in ("name", "format", "precision") else "right")
    for row in reference_rows(report):
        table.add_row(*row, style="dim")
    for row in report.get("artifacts", []):
        table.add_row(*_cells(row), style=None if row.get("status", "ok") == "ok" else "red")
    import sys

    Console(width=None if sys.stdout.isatty() else 160).print(table)


def print_partial(report: dict, as_json: bool = False) -> None:
    """What an interrupted evaluate/bench measured so far: the table plus the benchmark detail."""
    if as_json:
        import json

        print(json.dumps(report, indent=2, default=str))
        return
    print_table(report)
    for r in bench_rows(report):
        print("  " + "  ".join(f"{h}={c}" for h, c in zip(BENCH_HEADERS, r, strict=True)))


def write_report(run_dir: str | Path, report: dict) -> tuple[Path, Path, Path]:
    """report.json, report.md and the self-contained report.html, each written atomically; beside them the int8
    files' sensitivity as Model Explorer node data (report_quant.write_node_data)."""
    from edgeport.runtime.report_html import to_html
    from edgeport.runtime.report_quant import write_node_data

    run = Path(run_dir)
    write_node_data(run, report)
    return (files.write_json(run / "report.json", report), files.write_text(run / "report.md", to_markdown(report)),
            files.write_text(run / "report.html", to_html(report, run)))
