"""The quantisation section of report.md / report.html: per-layer sensitivity of each quantised file (worst layers, as a
table and a bar chart) and what the accuracy budget kept in float. Reads report.json data only (no TensorFlow).

Beside the report, each quantised file's sensitivity is also written as Model Explorer node data
(`model_explorer/<artifact>.json`), so the errors can be seen on the graph: open the .tflite/.onnx file in Model
Explorer (`pip install ai-edge-model-explorer`; `model-explorer-onnx` for ONNX) and load that JSON as node data.
The format is Model Explorer's `GraphNodeData`: results keyed by what the viewer finds a node by (a key is looked up
as an output tensor name its adapter recorded, else as a node id): for TFLite the op's output tensor name, for ONNX
the node's name (model-explorer-onnx's node id; it records no tensor names that way), and a colour gradient from the
worst to the best value. Written as plain JSON so the report needs neither package.
"""

from __future__ import annotations

import html

from edgeport.core.run import MODEL_EXPLORER as NODE_DATA_DIR  # beside report.json: <artifact>.json per quantised file

WORST = 8  # layers shown per file
RANKED = 5  # layers of the full-int8 ranking named beside a budgeted file
HEADERS = ["layer", "op", "SQNR dB (median channel)", "worst channel dB", "whole tensor dB", "RMSE / step"]
NOTE = ("Each layer's output in the quantised file against the float model's, on validation images, worst first. SQNR "
        "per output channel (median and worst); the whole-tensor SQNR and the RMSE in quantisation steps are shown "
        "too, but a channel with a huge range can make them look fine while the other channels are crushed, so the "
        "ranking uses the median channel. An error spreads downstream: the first bad layer is the likely cause.")


def _rows(report: dict) -> list[dict]:
    return [r for r in report.get("artifacts", []) if r.get("sensitivity")]


def _f(v, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def table_rows(row: dict) -> list[list[str]]:
    return [[s["layer"], s["op"], _f(s["sqnr_db"]), _f(s.get("worst_channel_sqnr_db")),
             _f(s.get("tensor_sqnr_db")), _f(s.get("rmse_over_scale"), "{:.2f}")] for s in row["sensitivity"][:WORST]]


def budget_line(row: dict) -> str | None:
    """What the accuracy budget did to this file, or None when it had no budget and no forced float layers."""
    conv = (row.get("lineage") or {}).get("conversion") or {}
    if "kept_float" not in conv:
        return None
    kept = ", ".join(conv["kept_float"]) or "none"
    share = conv.get("int8_mac_share")
    text = f"kept in float: {kept}; int8 share of MACs: {'-' if share is None else f'{share:.1%}'}"
    b = conv.get("budget")
    if b:
        text += (f"; validation drop {b['validation_drop']:.2f} points (budget {b['max_drop']:g}, {b['images']} "
                 f"{b['split']} images, {len(b['tries'])} files measured)")
        ranking = b.get("ranking") or []
        if ranking:  # the table below is of this file, mixed: say what chose the float layers
            shown = ", ".join(ranking[:RANKED]) + (", ..." if len(ranking) > RANKED else "")
            text += (f"; chosen by the full-int8 file's ranking (worst first: {shown}); the table is this file as "
                     "written, those layers in float")
    return text


def node_data(row: dict) -> dict | None:
    """Model Explorer `GraphNodeData` for one artifact's sensitivity rows: each layer's node coloured by its
    median-channel SQNR (dB), red at the worst value, white at the best. None when no row names its tensor."""
    results = {s.get("node") or s["tensor"]: {"value": s["sqnr_db"]} for s in row.get("sensitivity") or []
               if s.get("tensor") and s.get("sqnr_db") is not None}
    if not results:
        return None
    return {"results": results, "gradient": [{"stop": 0, "bgColor": "#c0504d"}, {"stop": 1, "bgColor": "#ffffff"}]}


def write_node_data(run_dir, report: dict) -> list:
    """`model_explorer/<artifact>.json` for each artifact with sensitivity rows (atomically); files there of
    artifacts this report no longer has are removed, so none describes an older file. Returns the paths written."""
    from pathlib import Path

    from edgeport.core import files

    folder = Path(run_dir) / NODE_DATA_DIR
    made = {}
    for row in _rows(report):
        data = node_data(row)
        if data is not None:
            made[f"{row['name']}.json"] = data
    if folder.is_dir():
        for old in folder.glob("*.json"):
            if old.name not in made:
                old.unlink()
    if not made:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        return []
    folder.mkdir(exist_ok=True)
    return [files.write_json(folder / name, data) for name, data in made.items()]


def _node_data_note(row: dict) -> str | None:
    if node_data(row) is None:
        return None
    return f"Model Explorer node data: {NODE_DATA_DIR}/{row['name']}.json (load it as node data on {row['path']})"


def markdown_lines(report: dict) -> list[str]:
    rows = _rows(report)
    if not rows:
        return []
    lines = ["", "## Quantisation sensitivity", "", NOTE]
    for row in rows:
        lines += ["", f"**{row['name']}**" + (f": {budget_line(row)}" if budget_line(row) else ""), ""]
        lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(row)]
        if _node_data_note(row):
            lines += ["", _node_data_note(row)]
    return lines


def html_section(report: dict, plt, table, data_uri, fig_png) -> str:
    """The section as HTML; `plt` None leaves the charts out (the tables stay)."""
    rows = _rows(report)
    if not rows:
        return ""
    esc = html.escape
    parts = ["<h2>Quantisation sensitivity</h2>", f"<p class='note'>{esc(NOTE)}</p>"]
    for row in rows:
        parts.append(f"<h3>{esc(row['name'])}</h3>")
        if budget_line(row):
            parts.append(f"<p>{esc(budget_line(row))}</p>")
        if plt is not None:
            parts.append(f"<div class='plots'><img alt='worst layers of {esc(row['name'])}' "
                         f"src='{data_uri(_chart(plt, row, fig_png))}'></div>")
        parts.append(table(HEADERS, table_rows(row), left=2))
        if _node_data_note(row):
            parts.append(f"<p class='note'>{esc(_node_data_note(row))}</p>")
    return "\n".join(parts)


def _chart(plt, row: dict, fig_png) -> bytes:
    """Horizontal bars: the worst layers' median-channel SQNR (dB), worst at the top."""
    worst = row["sensitivity"][:WORST]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(worst) + 1))
    values = [s["sqnr_db"] if s["sqnr_db"] is not None else 0.0 for s in worst]
    ax.barh([f"{s['layer']} ({s['op']})" for s in worst][::-1], values[::-1], color="#c0504d")
    ax.set_xlabel("SQNR, median output channel (dB): lower is worse")
    ax.set_title(f"{row['name']}: worst layers")
    return fig_png(fig)
