"""Check (not a test): does Model Explorer find every node that a run's node-data JSON names?

    python -m venv /tmp/mex && /tmp/mex/bin/pip install ai-edge-model-explorer model-explorer-onnx
    /tmp/mex/bin/python benchmarks/model_explorer_check.py runs/mnist

The viewer's adapters are not edgeport dependencies (the TFLite one installs about 480 MB), so this runs in a venv
of its own and imports nothing of edgeport. For each `model_explorer/<artifact>.json` of the run it builds the graph
of the artifact's file with Model Explorer's own adapter (the TFLite flatbuffer one, or model-explorer-onnx), then
looks each key up as the viewer's page does: as an output tensor name that the adapter recorded (`tensor_name` in a
node's outputs metadata), else as a node id. Prints per file how many keys found a node, and each key's node; exits
1 when any key finds none (that layer would not be coloured).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _get(obj, key):
    return obj[key] if isinstance(obj, dict) else getattr(obj, key)


def graph_lookup(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(output tensor name -> node id, node id -> op label) of the graph Model Explorer builds from `path`."""
    if path.suffix == ".tflite":
        from model_explorer.builtin_tflite_flatbuffer_adapter import BuiltinTfliteFlatbufferAdapter

        graphs = _get(BuiltinTfliteFlatbufferAdapter().convert(str(path), {})["graphCollections"][0], "graphs")
    else:
        from model_explorer_onnx.main import ONNXAdapter

        graphs = ONNXAdapter().convert(str(path), {})["graphs"]
    by_tensor, labels = {}, {}
    for graph in graphs:
        for node in _get(graph, "nodes"):
            labels[_get(node, "id")] = _get(node, "label")
            for out in _get(node, "outputsMetadata"):
                for attr in _get(out, "attrs"):
                    if _get(attr, "key") == "tensor_name":
                        by_tensor[_get(attr, "value")] = _get(node, "id")
    return by_tensor, labels


def main(argv: list[str] | None = None) -> int:
    run = Path((argv if argv is not None else sys.argv[1:])[0])
    report = {a["name"]: a for a in json.loads((run / "report.json").read_text())["artifacts"]}
    missing = 0
    for data_file in sorted((run / "model_explorer").glob("*.json")):
        name = data_file.stem
        by_tensor, labels = graph_lookup(run / report[name]["path"])
        results = json.loads(data_file.read_text())["results"]
        found = {key: by_tensor.get(key, key if key in labels else None) for key in results}
        hit = sum(node is not None for node in found.values())
        missing += len(found) - hit
        print(f"{name}: {hit} of {len(found)} keys find a node ({len(labels)} nodes in Model Explorer's graph)")
        for key, node in found.items():
            print(f"  {results[key]['value']:7.2f} dB  {key[:70]:70}  -> "
                  f"{'NOT FOUND' if node is None else f'{node} ({labels[node]})'}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
