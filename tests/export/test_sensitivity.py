"""Per-layer sensitivity and accuracy-budgeted mixed precision on a model full-int8 breaks (examples/break_int8.py):
the sensitivity table sees the crushed channels that a whole-tensor SQNR hides, `--max-drop 1` brings both the
TFLite and the ONNX int8 files within a point by keeping the same layers in float, and every bad input is one line.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edgeport.cli import main

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_spec = importlib.util.spec_from_file_location("break_int8", EXAMPLES / "break_int8.py")
break_int8 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(break_int8)
DATA = ["--train-limit", "5000", "--val-size", "1000", "--test-limit", "1000", "--calibration-size", "100"]
INT8 = "tflite_int8,onnx_static_int8"


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """A trained Keras 3 CNN with a huge constant channel that the next layer ignores (float outputs unchanged)."""
    path = tmp_path_factory.mktemp("broken") / "broken.keras"
    assert break_int8.main([str(path), "--train-limit", "5000", "--epochs", "2"]) == 0
    return path


@pytest.fixture(scope="module")
def budgeted(broken, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("budget") / "run"
    assert main(["export", "--model", str(broken), "--out", str(out), "--targets", INT8, "--max-drop", "1",
                 *DATA]) == 0
    return out


def _errors(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("edgeport: error:")]


def test_breaking_keeps_float_outputs(tmp_path):
    model = break_int8.build(0)
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")
    wider = break_int8.break_int8(model, huge=1000.0)
    np.testing.assert_array_equal(wider.predict(x, verbose=0), model.predict(x, verbose=0))
    assert wider.get_layer("conv2d").filters == model.get_layer("conv2d").filters + 1


def test_max_drop_keeps_the_same_layers_in_float_in_both_formats(budgeted):
    arts = {a["name"]: a for a in json.loads((budgeted / "manifest.json").read_text())["artifacts"]}
    tfl, onx = arts["tflite_int8"]["lineage"], arts["onnx_static_int8"]["lineage"]
    assert tfl["conversion"]["kept_float"] == onx["conversion"]["kept_float"]
    assert "conv2d" in tfl["conversion"]["kept_float"]
    assert onx["conversion"]["budget"]["tries"][1]["kept_float"] == tfl["conversion"]["kept_float"]  # tried whole
    for lineage in (tfl, onx):
        budget = lineage["conversion"]["budget"]
        assert budget["tries"][0]["kept_float"] == []
        assert budget["tries"][0]["drop"] > 10  # plain full int8 breaks this model
        assert budget["validation_drop"] <= 1.0
        assert budget["split"] == "val"
        assert 0 < lineage["conversion"]["int8_mac_share"] < 1
        assert lineage["max_drop"] == 1.0  # what verify reads


def test_sensitivity_ranks_the_crushed_tensor_first_where_the_whole_tensor_looks_fine(budgeted):
    arts = {a["name"]: a for a in json.loads((budgeted / "manifest.json").read_text())["artifacts"]}
    for name in ("tflite_int8", "onnx_static_int8"):
        ranking = arts[name]["lineage"]["conversion"]["budget"]["ranking"]
        assert ranking[0] == "conv2d"  # the full-int8 file: the first tensor with the huge channel, worst first
        rows = {r["layer"]: r for r in arts[name]["sensitivity"]}
        assert set(rows) == {"conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "flatten", "dense"}
        assert rows["conv2d"]["rmse_over_scale"] is None  # kept float in the written file


def test_per_channel_sqnr_sees_what_the_whole_tensor_hides(broken, budgeted):
    """The full-int8 file's conv2d output: every ordinary channel rounds to zero (median channel ~0 dB) while the
    whole-tensor SQNR, dominated by the constant channel, is high."""
    from edgeport.core.run import RunFolder
    from edgeport.export.export import ExportConfig, ExportContext
    from edgeport.export.sensitivity import layer_sensitivity
    from edgeport.export.targets import get_target
    from edgeport.train.compress import load_model
    from edgeport.train.tf import import_tf

    run = RunFolder(budgeted)
    model = load_model(run.model_path)
    ctx = ExportContext(tf=import_tf()[0], cfg=ExportConfig(calibration_size=100), run=run)
    path = budgeted / "plain.tflite"
    get_target("tflite_int8").fn(model, path, ctx)
    rows = layer_sensitivity(path, model, run.spec.normalise(run.dataset().val_images[:100]))
    first = rows[0]
    assert first["layer"] == "conv2d"
    assert first["sqnr_db"] < 1.0
    assert first["tensor_sqnr_db"] > 30.0


def test_report_has_the_sensitivity_section(budgeted):
    stale = budgeted / "model_explorer" / "gone_int8.json"  # of a file this run no longer has
    stale.parent.mkdir(exist_ok=True)
    stale.write_text("{}")
    assert main(["eval", str(budgeted)]) == 0
    md = (budgeted / "report.md").read_text()
    assert "## Quantisation sensitivity" in md
    assert "kept in float: " in md
    assert "chosen by the full-int8 file's ranking (worst first: conv2d" in md  # why those layers, not the table's
    report = json.loads((budgeted / "report.json").read_text())
    rows = [r for r in report["artifacts"] if r.get("sensitivity")]
    assert {r["name"] for r in rows} == {"tflite_int8", "onnx_static_int8"}
    assert set(rows[0]["sensitivity"][0]) >= {"layer", "op", "sqnr_db", "rmse_over_scale"}
    assert not stale.exists()
    assert "model_explorer/tflite_int8.json" in md


def test_model_explorer_node_data_names_what_the_viewer_finds_nodes_by(budgeted):
    """Each int8 file's sensitivity as Model Explorer node data, valued by the table's median-channel SQNR, with a
    gradient, keyed as the viewer looks nodes up: a TFLite op by its output tensor's name (the flatbuffer adapter
    records it as `tensor_name`); an ONNX node by its name, the ONNX adapter's node id (it records output names
    under another key, which node data is not matched against: ONNX tensor names would colour nothing)."""
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    if not (budgeted / "report.json").exists():
        assert main(["eval", str(budgeted)]) == 0
    report = {r["name"]: r for r in json.loads((budgeted / "report.json").read_text())["artifacts"]}
    proto = onnx.load(str(budgeted / report["onnx_static_int8"]["path"]))
    made_by = {o: n.name for n in proto.graph.node for o in n.output}
    tensors = {t["name"] for t in Interpreter(model_path=str(budgeted / report["tflite_int8"]["path"]))
               .get_tensor_details()}
    keys = {"tflite_int8": lambda r: r["tensor"], "onnx_static_int8": lambda r: made_by[r["tensor"]]}
    found = {"tflite_int8": tensors, "onnx_static_int8": {n.name for n in proto.graph.node}}
    for name, key in keys.items():
        data = json.loads((budgeted / "model_explorer" / f"{name}.json").read_text())
        rows = report[name]["sensitivity"]
        assert data["results"] == {key(r): {"value": r["sqnr_db"]} for r in rows}
        assert len(data["results"]) == len(rows) == 6 and set(data["results"]) <= found[name]
        assert [g["stop"] for g in data["gradient"]] == [0, 1]


@pytest.mark.parametrize("value,words", [("-1", "must be a finite number >= 0"), ("inf", "must be a finite number"),
                                         ("abc", "takes a number")])
def test_bad_max_drop_is_one_line(broken, tmp_path, capsys, value, words):
    out = tmp_path / "run"
    assert main(["export", "--model", str(broken), "--out", str(out), "--targets", INT8, "--max-drop", value,
                 *DATA]) == 2
    (line,) = _errors(capsys)
    assert words in line and repr(value) in line
    assert not (out / "manifest.json").exists()


def test_too_small_validation_split_says_the_smallest_resolvable_difference(broken, tmp_path, capsys):
    out = tmp_path / "run"
    small = [a if a != "1000" else "100" for a in DATA[:4]] + DATA[4:]  # 100 validation images
    assert main(["export", "--model", str(broken), "--out", str(out), "--targets", "tflite_int8", "--max-drop", "1",
                 *small]) == 2
    (line,) = _errors(capsys)
    assert "--max-drop 1:" in line and "100 images" in line and "6.00 points" in line
    assert not (out / "artifacts" / "tflite_int8.tflite").exists()


def test_an_unmeasurable_budget_leaves_an_earlier_run_as_it_was(broken, budgeted, capsys):
    """A --max-drop the validation split cannot resolve is refused before any file is converted or replaced: the
    earlier run's manifest, model and files stay (re-importing into it, or re-exporting it)."""
    before = {p: p.read_bytes() for p in budgeted.rglob("*") if p.is_file()}
    small = [a if a != "1000" else "100" for a in DATA[:4]] + DATA[4:]  # 100 validation images: resolves 6 points
    assert main(["export", "--model", str(broken), "--out", str(budgeted), "--targets", "tflite_fp32,tflite_int8",
                 "--max-drop", "1", *small]) == 2
    (line,) = _errors(capsys)
    assert "--max-drop 1:" in line and "100 images" in line
    assert main(["export", str(budgeted), "--targets", "tflite_fp32,onnx_static_int8", "--max-drop", "0.01"]) == 2
    (line,) = _errors(capsys)
    assert "--max-drop 0.01:" in line and "1000 images" in line
    assert {p: p.read_bytes() for p in budgeted.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("drop,n,available,words", [
    (0.5, 200, 200, ["200 images", "3.00 points", "--max-drop 3.00 or more", "--val-size 1200"]),
    (0, 200, 200, ["exactly 0", "3.00 or more"]),
    (0.2, 2000, 5000, ["the first 2000 of 5000", "at most 2000", "--max-drop 0.30 or more"]),
    (0.01, 1000, 1000, ["--max-drop 0.60 or more (0.30 with 2000 validation images)"]),
])
def test_an_unmeasurable_budget_says_what_would_measure_it(drop, n, available, words):
    from edgeport.core.errors import ConfigError
    from edgeport.export.budget import check_resolvable

    check_resolvable(3.0, 200, available=200, cap=2000)  # 6 of 200 images: exactly resolvable
    with pytest.raises(ConfigError) as exc:
        check_resolvable(drop, n, available=available, cap=2000)
    assert all(w in str(exc.value) for w in words), str(exc.value)


def test_a_misspelt_keep_float_leaves_an_earlier_run_as_it_was(broken, budgeted, tmp_path, capsys):
    before = {p: p.read_bytes() for p in budgeted.rglob("*") if p.is_file()}
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[variant]]\nmethod = "float"\ntargets = ["tflite_int8"]\nkeep_float = ["conv2dd"]\n')
    assert main(["export", "--model", str(broken), "--out", str(budgeted), "--recipe", str(recipe), *DATA]) == 2
    (line,) = _errors(capsys)
    assert "'conv2dd'" in line and "conv2d" in line
    assert {p: p.read_bytes() for p in budgeted.rglob("*") if p.is_file()} == before


def test_max_drop_without_an_int8_target_says_it_only_sets_verify_budget(budgeted, capsys):
    assert main(["export", str(budgeted), "--targets", "tflite_fp32", "--max-drop", "1"]) == 0
    err = capsys.readouterr().err
    assert "--max-drop 1: no int8 target here" in err and "edgeport verify" in err
    arts = json.loads((budgeted / "manifest.json").read_text())["artifacts"]
    assert arts[0]["lineage"]["max_drop"] == 1.0


def test_a_budget_no_layer_set_meets_fails_with_the_best_drop(budgeted, tmp_path, capsys, monkeypatch):
    """With no layer to keep in float (ranking emptied), the budget cannot be met: the target is recorded as failed
    with the best drop found, its file is not written, the other targets go on, and export exits 2 (the value the
    user gave cannot be met: bad input, named in one line)."""
    import json

    import edgeport.export.budget as budget

    monkeypatch.setattr(budget, "_ranking", lambda *a: [])
    assert main(["export", str(budgeted), "--targets", "tflite_int8,tflite_fp32", "--max-drop", "1"]) == 2
    err = capsys.readouterr().err
    assert "--max-drop 1 points; best" in err and "tflite_int8" in err
    manifest = json.loads((budgeted / "manifest.json").read_text())
    (failure,) = manifest["failed"]
    assert failure["target"] == "tflite_int8" and failure["kind"] == "budget"
    assert "no set of layers kept in float" in failure["error"] and "best" in failure["error"]
    assert not (budgeted / "artifacts" / "tflite_int8.tflite").exists()
    assert [a["name"] for a in manifest["artifacts"]] == ["tflite_fp32"]


def test_keep_float_naming_a_missing_layer_is_one_line(budgeted, tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[variant]]\nmethod = "float"\ntargets = ["tflite_int8"]\nkeep_float = ["conv9"]\n')
    assert main(["export", str(budgeted), "--recipe", str(recipe)]) == 2
    (line,) = _errors(capsys)
    assert "'conv9'" in line and "conv2d" in line


def test_recipe_keep_float_is_honoured(budgeted, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[variant]]\nmethod = "float"\ntargets = ["tflite_int8", "onnx_static_int8"]\n'
                      'keep_float = ["conv2d", "max_pooling2d", "conv2d_1"]\n')
    assert main(["export", str(budgeted), "--recipe", str(recipe), "--no-sensitivity"]) == 0
    arts = json.loads((budgeted / "manifest.json").read_text())["artifacts"]
    for a in arts:
        assert a["lineage"]["conversion"]["kept_float"] == ["conv2d", "max_pooling2d", "conv2d_1"]
        assert a["sensitivity"] is None


def test_default_export_gives_int8_files_a_sensitivity_table_and_counts_int8_macs(tiny_run, artifacts):
    from edgeport.runtime.macs import count_macs

    arts = {a["name"]: a for a in json.loads((tiny_run / "manifest.json").read_text())["artifacts"]}
    rows = arts["tflite_int8"]["sensitivity"]
    assert rows and all(r["sqnr_db"] > 10 for r in rows)  # a healthy model: no layer near 0 dB
    assert arts["tflite_fp32"]["sensitivity"] is None
    int8, fp32 = count_macs(artifacts["tflite_int8"]), count_macs(artifacts["tflite_fp32"])
    assert int8.int8_macs == int8.macs > 0
    assert fp32.int8_macs == 0


def test_a_cubic_nchw_tensor_is_compared_in_the_keras_layout():
    """32x32 with 32 channels fits NHWC and NCHW alike: the shape cannot tell, so the layout nearer the float
    values is taken (an ONNX stem of a MobileNetV2 at 32x32 read -1 dB as is, 40 dB transposed)."""
    from edgeport.export.sensitivity import _match_layout, channel_stats

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 6, 6, 6)).astype(np.float32)
    nchw = ref.transpose(0, 3, 1, 2) + rng.normal(0, 0.01, (2, 6, 6, 6)).astype(np.float32)
    matched = _match_layout(nchw, ref)
    assert channel_stats(ref, matched, None)["sqnr_db"] > 30
    assert channel_stats(ref, nchw, None)["sqnr_db"] < 3  # as is: the permuted signal
    assert _match_layout(ref + 0.01, ref) is not None and np.allclose(_match_layout(ref + 0.01, ref), ref + 0.01)
    assert _match_layout(ref[:, :, :, :3], ref) is None


def test_keeping_an_activation_in_float_in_onnx_keeps_the_op_tflite_fuses_it_into():
    """tf2onnx leaves conv and ReLU6 as two nodes where TFLite fuses them (and names the fused op by the ReLU layer):
    keeping the ReLU layer keeps its conv too, unless another node reads the conv's output."""
    from onnx import helper

    from edgeport.export.mixed import _with_fused_producers

    nodes = [helper.make_node("Conv", ["x", "w"], ["c1"], name="m/stem_conv/Conv2D"),
             helper.make_node("Clip", ["c1"], ["r1"], name="m/stem_relu6/Relu6"),
             helper.make_node("Conv", ["r1", "w"], ["c2"], name="m/conv2/Conv2D"),
             helper.make_node("Relu", ["c2"], ["r2"], name="m/re_lu/Relu"),
             helper.make_node("Add", ["c2", "r2"], ["y"], name="m/add/Add")]  # c2 read twice: not fusable
    proto = helper.make_model(helper.make_graph(nodes, "g", [], []))
    assert _with_fused_producers(proto, ["m/stem_relu6/Relu6"]) == ["m/stem_relu6/Relu6", "m/stem_conv/Conv2D"]
    assert _with_fused_producers(proto, ["m/re_lu/Relu"]) == ["m/re_lu/Relu"]
    assert _with_fused_producers(proto, ["m/conv2/Conv2D"]) == ["m/conv2/Conv2D"]


def test_every_quantised_tflite_file_gets_a_sensitivity_table(tiny_run, tmp_path):
    """float16, dynamic-range and int16x8 files are quantised too: each gets the table, in the same layer names as
    the int8 file; the float16 file, whose only rounding is its weights', is the closest to the float model."""
    import shutil

    from edgeport.export.export import ExportConfig, export_run

    for name in ("model.keras", "train.json", "reference.npz"):
        shutil.copy(tiny_run / name, tmp_path / name)
    export_run(tmp_path, ExportConfig(targets=("tflite_fp16", "tflite_dynamic_int8", "tflite_int16x8"),
                                      calibration_size=32, validation_size=32))
    arts = {a["name"]: a for a in json.loads((tmp_path / "manifest.json").read_text())["artifacts"]}
    int8 = {a["name"]: a for a in json.loads((tiny_run / "manifest.json").read_text())["artifacts"]}["tflite_int8"]
    layers = {r["layer"] for r in int8["sensitivity"]}
    for name in ("tflite_fp16", "tflite_dynamic_int8", "tflite_int16x8"):
        rows = arts[name]["sensitivity"]
        assert rows and {r["layer"] for r in rows} == layers, name
    median = {n: float(np.median([r["sqnr_db"] for r in arts[n]["sensitivity"]])) for n in arts}
    assert median["tflite_fp16"] > median["tflite_int16x8"] and median["tflite_fp16"] > 50
    assert all(r["rmse_over_scale"] is None for r in arts["tflite_fp16"]["sensitivity"])  # float activations
    assert any(r["rmse_over_scale"] is not None for r in arts["tflite_int16x8"]["sensitivity"])


def test_the_browsers_int8_file_keeps_the_same_layers_in_float_at_batch_1(broken, tmp_path):
    """web_tflite_int8 is full int8 too: a budget fixes it like tflite_int8, from its own batch-1 graph (a shared
    calibration of the dynamic-batch graph would give the browser a shape LiteRT.js refuses)."""
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "run"
    assert main(["export", "--model", str(broken), "--out", str(out), "--targets", "tflite_int8,web_tflite_int8",
                 "--max-drop", "1", "--no-sensitivity", *DATA]) == 0
    arts = {a["name"]: a for a in json.loads((out / "manifest.json").read_text())["artifacts"]}
    web, tfl = arts["web_tflite_int8"]["lineage"]["conversion"], arts["tflite_int8"]["lineage"]["conversion"]
    assert web["budget"]["tries"][0]["drop"] > 10 and web["budget"]["validation_drop"] <= 1.0
    assert web["kept_float"] == tfl["kept_float"] and "conv2d" in web["kept_float"]
    (inp,) = Interpreter(model_path=str(out / arts["web_tflite_int8"]["path"])).get_input_details()
    assert list(inp["shape"]) == [1, 28, 28, 1] and inp["dtype"] == np.float32
