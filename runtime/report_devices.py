"""The devices section of a report: one latency / memory / accuracy column group per device, this machine first,
each device's answers compared with this machine's, and what each device is.

Rendering only (markdown, HTML, terminal): the measuring is the runtime's benchmark, run on each device by
`edgeport.remote`. A report without `devices` renders nothing here.
"""

from __future__ import annotations

import html

HOST_GROUP = ("p50 ms", "model MB", "accuracy")
DEVICE_GROUP = ("p50 ms", "model MB", "accuracy", "same top-1")  # same top-1: share of images answered as the host
INFO_HEADERS = ["device", "status", "host name", "board / CPU", "CPUs", "OS", "Python", "edgeport", "onnxruntime",
                "LiteRT", "host key", "seconds"]
NOTE = ("Per device, measured there by its own edgeport runtime on the same files and test images: p50 = batch-1 "
        "latency (first thread count), model MB = the model's own peak memory (peak of a fresh process running it "
        "minus that device's runtime baseline), accuracy on the test images, and same top-1 = share of test images "
        "on which the device gives the same class as this machine.")


def devices_of(report: dict) -> list[dict]:
    return report.get("devices") or []


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2%}"


def _num(v, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def _cells(row: dict | None, local: bool) -> list[str]:
    width = len(HOST_GROUP if local else DEVICE_GROUP)
    if row is None:
        return ["-"] * width
    if row.get("status", "ok") != "ok":
        return [row.get("status") or "failed"] + [""] * (width - 1)
    cells = [_num((row.get("latency_ms") or {}).get("p50"), "{:.3f}"), _num(row.get("model_peak_mb"), "{:.2f}"),
             _pct(row.get("accuracy"))]
    return cells if local else cells + [_pct(row.get("agreement_with_host"))]


def comparison(report: dict) -> tuple[list[tuple[str, tuple[str, ...]]], list[list[str]]]:
    """(column groups as (device name, its column headers), one row per artifact) for the side-by-side table."""
    devices = [d for d in devices_of(report) if d["status"] == "ok"]  # the others: the device list says why
    groups = [(d["name"], HOST_GROUP if d.get("local") else DEVICE_GROUP) for d in devices]
    found = [{r["name"]: r for r in (report.get("artifacts", []) if d.get("local") else d.get("artifacts", []))}
             for d in devices]
    rows = []
    for name in (r["name"] for r in report.get("artifacts", [])):
        row = [name]
        for d, rows_of_d in zip(devices, found, strict=True):
            row += _cells(rows_of_d.get(name), bool(d.get("local")))
        rows.append(row)
    return groups, rows


def info_rows(report: dict) -> list[list[str]]:
    out = []
    for d in devices_of(report):
        i = d.get("info") or {}
        pk = i.get("packages") or {}
        status = d["status"] if d["status"] == "ok" else f"{d['status']}: {d.get('error')}"
        key = {True: "verified", False: "NOT verified"}.get(d.get("host_key_verified"), "-")
        cpu = " / ".join(x for x in (i.get("board"), i.get("cpu_model")) if x) or "-"
        out.append([d["name"] + (" (this machine)" if d.get("local") else ""), status, i.get("hostname", "-"), cpu,
                    str(i.get("cpus", "-")), i.get("os", "-"), i.get("python", "-"),
                    pk.get("edgeport", i.get("edgeport", "-")), pk.get("onnxruntime", "-"),
                    pk.get("ai-edge-litert", "-"), key, _num(d.get("seconds"), "{:.0f}")])
    return out


def differences(report: dict) -> list[str]:
    """One line per device and file whose answers or accuracy differ from this machine's."""
    out = []
    for d in devices_of(report):
        for r in d.get("artifacts", []) if not d.get("local") else []:
            if r.get("differs_from_host"):
                idx = ", ".join(map(str, r.get("differing_indices", [])))
                out.append(f"{d['name']}: {r['name']} answers {r['differs_from_host']} test image(s) differently from "
                           f"this machine (accuracy {(r.get('accuracy_delta') or 0) * 100:+.2f} pt; indices {idx}"
                           + (" ..." if r["differs_from_host"] > len(r.get("differing_indices", [])) else "") + ")")
            elif r.get("status") not in ("ok", "skipped"):
                out.append(f"{d['name']}: {r['name']} failed on the device: {r.get('error')}")
        for note in d.get("notes", []):
            out.append(f"{d['name']}: {note}")
        if d.get("cleanup"):
            out.append(f"{d['name']}: {d['cleanup']}")
    return out


def markdown_lines(report: dict) -> list[str]:
    if not devices_of(report):
        return []
    from edgeport.runtime.report import _md_table

    groups, rows = comparison(report)
    headers = ["artifact"] + [f"{name}: {h}" for name, group in groups for h in group]
    lines = ["", "## Devices", "", NOTE, ""] + _md_table(headers, rows)
    lines += ["", "Devices:", ""] + _md_table(INFO_HEADERS, info_rows(report))
    if report.get("host_keys_verified") is False:
        lines += ["", "**Host keys were not verified** (--insecure-accept-host-key)."]
    diffs = differences(report)
    return lines + ([""] + [f"- {line}" for line in diffs] if diffs else ["", "Every device gives the same answers "
                                                                          "as this machine on every file."])


def html_section(report: dict, plt=None) -> str:
    """The devices section of report.html: grouped header, device table, differences, and a latency plot."""
    if not devices_of(report):
        return ""
    esc = html.escape
    groups, rows = comparison(report)
    top = "<tr><th class='l' rowspan='2'>artifact</th>" + "".join(
        f"<th colspan='{len(g)}' style='text-align:center'>{esc(n)}</th>" for n, g in groups) + "</tr>"
    sub = "<tr>" + "".join(f"<th>{esc(h)}</th>" for _, g in groups for h in g) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td class='{'l' if k == 0 else ''}'>{esc(c)}</td>" for k, c in enumerate(r))
                   + "</tr>" for r in rows)
    info = "<tr>" + "".join(f"<th class='l'>{esc(h)}</th>" for h in INFO_HEADERS) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td class='l'>{esc(str(c))}</td>" for c in r) + "</tr>" for r in info_rows(report))
    parts = ["<h2>Devices</h2>", f"<p class='note'>{esc(NOTE)}</p>", f"<table>{top}{sub}{body}</table>",
             f"<table>{info}</table>"]
    if report.get("host_keys_verified") is False:
        parts.append("<p class='wrong'>Host keys were not verified (--insecure-accept-host-key).</p>")
    diffs = differences(report)
    parts.append("<ul>" + "".join(f"<li>{esc(d)}</li>" for d in diffs) + "</ul>" if diffs else
                 "<p>Every device gives the same answers as this machine on every file.</p>")
    png = _latency_png(plt, report) if plt is not None else None
    if png:
        from edgeport.runtime.report_html import data_uri

        parts.append(f"<div class='plots'><img alt='p50 latency per device' src='{data_uri(png)}'></div>")
    return "\n".join(parts)


def _latency_png(plt, report: dict) -> bytes | None:
    """Grouped bars: p50 latency and model memory of each artifact on each device."""
    from edgeport.runtime.report_html import _fig_png

    devices = [d for d in devices_of(report) if d["status"] == "ok"]
    names = [r["name"] for r in report.get("artifacts", []) if r.get("status") == "ok"]
    if len(devices) < 2 or not names:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 + 0.45 * len(names) * len(devices) ** 0.5))
    height = 0.8 / len(devices)
    for k, d in enumerate(devices):
        rows = {r["name"]: r for r in (report["artifacts"] if d.get("local") else d.get("artifacts", []))}
        for ax, get in ((axes[0], lambda r: (r.get("latency_ms") or {}).get("p50")),
                        (axes[1], lambda r: r.get("model_peak_mb"))):
            vals = [get(rows[n]) if n in rows and rows[n].get("status") == "ok" else None for n in names]
            ax.barh([i + k * height for i in range(len(names))], [v or 0 for v in vals], height=height,
                    label=d["name"])
    for ax, title in zip(axes, ("p50 latency (ms), batch 1", "model's own peak memory (MB)"), strict=True):
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(fontsize=8)
    return _fig_png(fig)


def print_devices(report: dict) -> None:
    """The side-by-side table and the device list on the terminal."""
    if not devices_of(report):
        return
    import sys

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    groups, rows = comparison(report)
    table = Table(title="devices: p50 ms, model MB, accuracy, same top-1 as this machine")
    table.add_column("artifact")
    for name, group in groups:
        for h in group:
            table.add_column(f"{name}\n{h}", justify="right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    for row in info_rows(report):
        console.print("  " + "  ".join(f"{h}: {c}" for h, c in zip(INFO_HEADERS, row, strict=True) if c != "-"),
                      highlight=False)
    for line in differences(report):
        console.print(f"  {line}", highlight=False)
