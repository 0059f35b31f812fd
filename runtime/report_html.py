"""report.html: one self-contained page (CSS inline, every image a base64 data: URI) for a run's report.

Plots need matplotlib (the [report] or [train] extra), imported here only; without it the page has the
tables, the training curves PNG the train stage wrote, the disagreement grid (drawn with Pillow, a runtime
dependency) and a line saying which plots were left out and how to get them.
"""

from __future__ import annotations

import base64
import html
import io as _io
from pathlib import Path

import numpy as np

from edgeport.core.errors import EdgeportError, MissingDependencyError, require

GRID_MAX = 48  # disagreeing images drawn in the grid (all of them are listed in report.json)

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1250px;color:#222}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}tr.bad td{background:#fde8e8}.note{color:#666}
.plots img{max-width:600px;margin:4px;border:1px solid #ddd}.grid{display:flex;flex-wrap:wrap;gap:8px}
.cell{border:1px solid #ddd;padding:4px;font-size:12px;width:118px}.cell img{width:84px;image-rendering:pixelated}
.wrong{color:#b00;font-weight:600}h2{border-bottom:1px solid #ddd;padding-bottom:2px;margin-top:28px}"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def pareto_front(xs, ys, maximize_y: bool) -> list[int]:
    """Indices of points no other point beats on both axes (smaller x, and larger or smaller y)."""
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i] if maximize_y else ys[i]))
    front, best = [], None
    for i in order:
        y = ys[i]
        if best is None or (y > best if maximize_y else y < best):
            front.append(i)
            best = y
    return front


def _fig_png(fig) -> bytes:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _confusion_png(plt, matrix, title: str) -> bytes:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.imshow(np.log1p(m), cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if i == j else "black")
    ax.set(title=title, xlabel="predicted", ylabel="true", xticks=range(len(m)), yticks=range(len(m)))
    return _fig_png(fig)


def _tradeoff_png(plt, rows: list[dict], y_key: str, ylabel: str, maximize_y: bool) -> bytes | None:
    pts = [(r["gzip_bytes"] / 1024, _get(r, y_key), r["name"]) for r in rows
           if r.get("gzip_bytes") and _get(r, y_key) is not None]
    if not pts:
        return None
    xs, ys, names = zip(*pts, strict=True)
    front = pareto_front(xs, ys, maximize_y)
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    ax.scatter(xs, ys, color="#888", zorder=2)
    fx, fy = [xs[i] for i in front], [ys[i] for i in front]
    ax.plot(fx, fy, "o-", color="#d62728", zorder=3, label="Pareto front")
    for x, y, n in pts:
        ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel="gzip size (KB)", ylabel=ylabel, title=f"{ylabel} vs gzip size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _fig_png(fig)


def _get(row: dict, key: str):
    if key == "p50":
        return (row.get("latency_ms") or {}).get("p50")
    if key == "accuracy" and row.get("accuracy") is not None:
        return row["accuracy"] * 100
    return row.get(key)


def _curves_png(plt, run: Path) -> bytes | None:
    if (run / "curves.png").is_file():  # what the train stage drew: embed it as it is
        return (run / "curves.png").read_bytes()
    if plt is None or not (run / "history.json").is_file():
        return None
    from edgeport.core import files

    hist = files.read_json(run / "history.json", "training history")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key in (metric, f"val_{metric}"):
            if key in hist:
                ax.plot(range(1, len(hist[key]) + 1), hist[key], marker="o", label=key)
        ax.set(xlabel="epoch", title=metric)
        ax.legend(fontsize=8)
    return _fig_png(fig)


def _calibration_png(plt, curve: dict) -> bytes:
    """Validation accuracy vs calibration images (log scale), one line per target, the reference dashed."""
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    for target in curve["targets"]:
        pts = sorted((p["size"], p["accuracy"] * 100) for p in curve["points"] if p["target"] == target)
        ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", label=target)
    if curve.get("reference_accuracy") is not None:
        ax.axhline(curve["reference_accuracy"] * 100, color="gray", linestyle="--", label="reference (Keras)")
    ax.set_xscale("log")
    ax.set_xticks(curve["sizes"], [str(n) for n in curve["sizes"]])
    ax.minorticks_off()
    ax.set_xlabel("calibration images")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("accuracy vs calibration size")
    ax.legend(fontsize=8)
    return _fig_png(fig)


def _image_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = _io.BytesIO()
    x = np.asarray(image, np.uint8)
    Image.fromarray(x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x).save(buf, format="PNG")
    return buf.getvalue()


def _load_test_images(report: dict):
    from edgeport.core.data import DataConfig, load_dataset

    ds = report.get("dataset") or {}
    return load_dataset(DataConfig.from_dict(ds.get("config")), test_limit=ds.get("test_limit")).test_images


def _table(headers: list[str], rows: list[list], left: int = 1, bad: set[int] = frozenset()) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{html.escape(str(h))}</th>' for i, h in enumerate(headers))
    body = []
    for k, r in enumerate(rows):
        tds = "".join(f'<td class="{"l" if i < left else ""}">{html.escape(str(c))}</td>' for i, c in enumerate(r))
        body.append(f'<tr class="{"bad" if k in bad else ""}">{tds}</tr>')
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"


def to_html(report: dict, run_dir: str | Path) -> str:
    """The whole page as one string; reads curves.png / history.json and the test images from the run."""
    from edgeport.runtime import report as rpt

    run = Path(run_dir)
    try:
        require("matplotlib", "report")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except (MissingDependencyError, ImportError):
        plt = None
    esc = html.escape
    rows = report.get("artifacts", [])
    ok = [r for r in rows if r.get("status") == "ok"]
    ref = report.get("reference") or {}
    parts = [f"<h1>edgeport report: {esc(str(report.get('run', '')))}</h1>",
             f"<p>{esc(rpt.summary_line(report))}</p>"]
    if plt is None:
        parts.append("<p class='note'>Plots left out: matplotlib is not installed "
                     "(pip install 'edgeport[report]'). Tables and the disagreement grid are complete.</p>")

    headers = [h for h, _, _ in rpt.COLUMNS]
    table_rows = rpt.reference_rows(report) + [rpt._cells(r) for r in rows]
    bad = {k + len(table_rows) - len(rows) for k, r in enumerate(rows) if r.get("status", "ok") != "ok"}
    parts += ["<h2>Summary</h2>", _table(headers, table_rows, left=3, bad=bad)]
    for r in rows:
        if r.get("status", "ok") != "ok":
            parts.append(f"<p class='wrong'>{esc(r['name'])}: {esc(str(r.get('error', r['status'])))}</p>")

    delta_rows = rpt.delta_rows(report)
    if delta_rows:
        parts += ["<h2>Accuracy change vs the reference</h2>", f"<p class='note'>{esc(rpt.delta_note(report))}</p>",
                  _table(rpt.DELTA_HEADERS, delta_rows, left=2)]
    curve_headers, curve_rows = rpt.curve_rows(report)
    if curve_rows:
        png = _calibration_png(plt, report["calibration_curve"]) if plt is not None else None
        parts += ["<h2>Calibration size</h2>", f"<p class='note'>{esc(rpt.curve_note(report))}</p>",
                  _table(curve_headers, curve_rows)]
        if png:
            parts.append(f"<div class='plots'><img alt='accuracy vs calibration images' src='{data_uri(png)}'></div>")
    bench_rows = rpt.bench_rows(report)
    if bench_rows:
        parts += ["<h2>Benchmark</h2>", f"<p class='note'>{esc(rpt.BENCH_NOTE)}</p>",
                  _table(rpt.BENCH_HEADERS, bench_rows, left=2)]

    from edgeport.runtime.report_devices import html_section

    parts.append(html_section(report, plt))
    from edgeport.runtime import report_quant

    parts.append(report_quant.html_section(report, plt, _table, data_uri, _fig_png))

    plots = []
    if plt is not None:
        curves = _curves_png(plt, run)
        if ref.get("confusion"):
            plots.append(("confusion matrix, reference", _confusion_png(plt, ref["confusion"], "reference (Keras)")))
        if ok:
            worst = min(ok, key=lambda r: (r.get("accuracy") or 0, r.get("agreement") or 0))
            plots.append((f"confusion matrix, worst artifact ({worst['name']})",
                          _confusion_png(plt, worst["confusion"], f"worst: {worst['name']}")))
            for key, label, maximize in (("accuracy", "accuracy (%)", True), ("p50", "p50 latency (ms)", False)):
                png = _tradeoff_png(plt, ok, key, label, maximize)
                if png:
                    plots.append((f"{label} vs gzip size", png))
    else:
        curves = _curves_png(None, run)
    if curves:
        parts += ["<h2>Training</h2>", f"<div class='plots'><img alt='training curves' src='{data_uri(curves)}'></div>"]
    if plots:
        parts += ["<h2>Plots</h2>", "<div class='plots'>"]
        parts += [f"<img alt='{esc(t)}' title='{esc(t)}' src='{data_uri(png)}'>" for t, png in plots]
        parts.append("</div><p class='note'>Pareto front (red): no other file is both smaller and better.</p>")

    fid = report.get("fidelity") or {}
    if fid.get("names"):
        names = fid["names"]
        parts += ["<h2>Fidelity</h2>", "<p>Top-1 agreement between every pair (share of test images).</p>",
                  _table([""] + names, [[n] + [f"{v:.2%}" for v in row]
                                        for n, row in zip(names, fid["pairwise_agreement"], strict=True)])]
        parts.append("<p>Per-class accuracy (test images of each true class).</p>" if ok else "")
        parts.append(_table(["artifact"] + [str(c) for c in range(len(ok[0]["per_class_accuracy"]))],
                            [[r["name"]] + [f"{v:.1%}" if v == v else "-" for v in r["per_class_accuracy"]]
                             for r in ok]) if ok else "")
        parts.append(_grid(report, fid))
    parts.append("<h2>Environment</h2><p class='note'>" + esc(", ".join(
        f"{k} {v}" for k, v in (report.get("environment") or {}).items())) + "</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>edgeport report: "
            f"{esc(str(report.get('run', '')))}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _grid(report: dict, fid: dict) -> str:
    dis = fid["disagreements"]
    head = (f"<h3>Images where the files disagree: {dis['count']}</h3><p class='note'>{dis.get('all_wrong', 0)} of "
            "them fool every file (a hard image, not an export problem). Red: wrong prediction.</p>")
    if not dis["count"]:
        return head
    try:
        images = _load_test_images(report)
    except EdgeportError as exc:
        why = html.escape(str(exc))
        return head + f"<p class='note'>Grid left out: the test images could not be loaded ({why}).</p>"
    cells = []
    for k, idx in enumerate(dis["indices"][:GRID_MAX]):
        label = dis["labels"][k]
        preds = "".join(
            f"<div class='{'wrong' if p[k] != label else ''}'>{html.escape(n)}: {p[k]}</div>"
            for n, p in dis["predictions"].items())
        cells.append(f"<div class='cell'><img alt='test image {idx}' src='{data_uri(_image_png(images[idx]))}'>"
                     f"<div>#{idx} true <b>{label}</b></div>{preds}</div>")
    more = f"<p class='note'>First {GRID_MAX} shown; all indices are in report.json.</p>" \
        if dis["count"] > GRID_MAX else ""
    return head + "<div class='grid'>" + "".join(cells) + "</div>" + more
