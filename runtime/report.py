"""Turn measurements into report.json, report.md and a terminal table. No TensorFlow, no data loading."""

from __future__ import annotations

from pathlib import Path

from edgeport import io

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
]


def _cells(row: dict) -> list[str]:
    out = []
    for _, key, fmt in COLUMNS:
        value = (row.get("latency_ms") or {}).get("p50") if key == "p50" else row.get(key)
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


def to_markdown(report: dict) -> str:
    ref = report.get("reference") or {}
    lines = [f"# edgeport report: {report.get('run', '')}", ""]
    ds = report.get("dataset") or {}
    lines.append(f"Test set: {ds.get('test_images', '?')} images from {ds.get('source', '?')}. "
                 f"Reference Keras accuracy: {ref.get('accuracy', float('nan')):.2%}.")
    lines.append("Agreement = share of test images with the same top-1 class as the Keras model; max |dp| = "
                 "largest probability difference. Latency: batch 1, median of timed runs after warm-up.")
    lines += ["", "| " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines.append("| " + " | ".join(reference_row(report)) + " |")
    for row in report.get("artifacts", []):
        lines.append("| " + " | ".join(_cells(row)) + " |")
    failed = [r for r in report.get("artifacts", []) if r.get("status", "ok") != "ok"]
    if failed:
        lines += ["", "## Failures", ""] + [f"- **{r['name']}**: {r.get('error', r['status'])}" for r in failed]
    if report.get("environment"):
        lines += ["", "## Environment", ""] + [f"- {k}: {v}" for k, v in report["environment"].items()]
    return "\n".join(lines) + "\n"


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgeport: {report.get('run', '')}")
    for header, key, _ in COLUMNS:
        table.add_column(header, justify="left" if key in ("name", "format", "precision") else "right")
    table.add_row(*reference_row(report), style="dim")
    for row in report.get("artifacts", []):
        table.add_row(*_cells(row), style=None if row.get("status", "ok") == "ok" else "red")
    import sys

    Console(width=None if sys.stdout.isatty() else 160).print(table)


def write_report(run_dir: str | Path, report: dict) -> tuple[Path, Path]:
    run = Path(run_dir)
    return io.write_json(run / "report.json", report), io.write_text(run / "report.md", to_markdown(report))
