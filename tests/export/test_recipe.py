"""Recipes: parsing and every bad-input message, then one small recipe end to end on the tiny run."""

import json
import shutil

import pytest

from edgeport.core.errors import ConfigError, ExportError

pytest.importorskip("tensorflow_model_optimization")

from edgeport.export.recipe import load_recipe, parse_recipe  # noqa: E402


def _recipe(*variants, **settings):
    return {"settings": settings, "variant": list(variants)} if settings else {"variant": list(variants)}


def test_default_recipe_is_the_full_matrix():
    recipe = load_recipe()
    assert {v.compress.method.value for v in recipe.variants} == {
        "float", "prune", "sparse_2_4", "cluster", "qat", "pqat", "cqat"}
    names = recipe.artifact_names()
    for target in ("tflite_fp32", "tflite_fp16", "tflite_dynamic_int8", "tflite_int8_float_io", "tflite_int8",
                   "tflite_int16x8", "onnx_fp32", "onnx_static_int8", "qat_onnx_qdq", "pqat_tflite_int8"):
        assert target in names
    assert next(v for v in recipe.variants if v.name == "pqat").compress.sparsity == 0.8


@pytest.mark.parametrize("raw, match", [
    (_recipe({"method": "distil", "targets": ["tflite_int8"]}),
     r"variant 1: unknown method 'distil'; expected one of: float, prune, sparse_2_4, cluster, qat, pqat, cqat"),
    (_recipe({"method": "prune", "sparsity": 1.5, "targets": ["tflite_int8"]}),
     r"variant 1 \(prune\): sparsity must be in \(0, 1\), got 1.5"),
    (_recipe({"method": "prune", "sparsity": 0, "targets": ["tflite_int8"]}), r"sparsity must be in \(0, 1\)"),
    (_recipe({"method": "float", "targets": ["tflite_int8"], "calibration_size": 0}),
     r"variant 1 \(float\): calibration_size must be >= 1"),
    (_recipe({"method": "prune", "clusters": 8, "targets": ["tflite_int8"]}),
     r"unknown key\(s\) 'clusters' for method 'prune'; valid: .*sparsity"),
    (_recipe({"method": "float", "targets": ["tflite_int9"]}), r"unknown export target 'tflite_int9'; expected one of"),
    (_recipe({"method": "float", "targets": []}), "targets must be a non-empty list"),
    (_recipe({"method": "qat", "targets": ["tflite_int8"]}, {"method": "qat", "targets": ["onnx_qdq"]}),
     "name 'qat' is used twice"),
    (_recipe({"method": "float", "targets": ["tflite_int8"]}, speed=3), r"\[settings\]: unknown key\(s\) 'speed'"),
    ({"variants": []}, r"unknown key\(s\) 'variants'; valid: settings, variant"),
    (_recipe({"method": "prune", "sparsity": "high", "targets": ["tflite_int8"]}), "sparsity must be a number"),
    (_recipe({"method": "qat", "targets": ["tflite_int16x8"]}), r"a qat model takes: tflite_int8, "),
    (_recipe({"method": "prune", "targets": ["onnx_qdq"]}), r"variant 1 \(prune\): target onnx_qdq needs a QAT model"),
])
def test_bad_recipes_name_the_entry_and_the_valid_choices(raw, match):
    with pytest.raises(ConfigError, match=match):
        parse_recipe(raw, "my.toml")


def test_recipe_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[variant]\nmethod = ")
    with pytest.raises(ConfigError, match="bad.toml: not a readable TOML recipe"):
        load_recipe(bad)


def _run_with_model(tmp_path, *layers):
    """A run folder whose model.keras is a small untrained model with the given layers."""
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    run = tmp_path / "run"
    run.mkdir()
    keras.Sequential([keras.layers.Input((28, 28, 1), name="image"), *layers]).save(run / "model.keras")
    return run


@pytest.mark.parametrize("method, layers, match", [
    ("sparse_2_4", lambda L: [L.Conv2D(3, 3), L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")],
     r"variant 2 \(sparse_2_4\): sparse_2_4: no layer qualifies for 2:4"),
    ("qat", lambda L: [L.Conv2D(4, 3), L.LayerNormalization(name="ln"), L.Flatten(), L.Dense(10)],
     r"variant 2 \(qat\): QAT cannot quantise layer\(s\) ln \(LayerNormalization\)"),
])
def test_inapplicable_method_fails_before_any_work(tmp_path, method, layers, match):
    from edgeport.export.export import ExportConfig, export_run
    from edgeport.train.tf import import_tf

    _, keras = import_tf()
    run = _run_with_model(tmp_path, *layers(keras.layers))
    recipe = parse_recipe(_recipe({"method": "float", "targets": ["tflite_fp32"]},
                                  {"method": method, "targets": ["tflite_int8"]}), "my.toml")
    with pytest.raises(ConfigError, match=match):
        export_run(run, ExportConfig(validation_size=16), recipe=recipe)
    assert sorted(p.name for p in run.rglob("*")) == ["model.keras"]  # no artifact, model or manifest left


@pytest.fixture(scope="module")
def recipe_run(tiny_run, tmp_path_factory):
    """The tiny run exported through a small recipe: PTQ, static ONNX int8, QAT -> QDQ ONNX, pruned + PQAT."""
    from edgeport.export.export import ExportConfig, export_run

    run = tmp_path_factory.mktemp("recipe_run")
    for name in ("model.keras", "train.json", "reference.npz"):
        shutil.copy(tiny_run / name, run / name)
    recipe = parse_recipe(_recipe(
        {"method": "float", "targets": ["tflite_int8_float_io", "onnx_static_int8"], "calibration_size": 32},
        {"method": "qat", "targets": ["tflite_int8", "onnx_qdq"], "max_drop": 0.5},
        {"method": "pqat", "sparsity": 0.8, "min_weights": 0, "targets": ["tflite_int8"]},  # tiny: prune every layer
        epochs=0.5, batch_size=64), "test.toml")
    export_run(run, ExportConfig(calibration_size=48, validation_size=64), recipe=recipe)
    return run


def _artifacts(run):
    return {a["name"]: a for a in json.loads((run / "manifest.json").read_text())["artifacts"]}


def test_manifest_lineage_for_every_artifact(recipe_run):
    arts = _artifacts(recipe_run)
    assert list(arts) == ["tflite_int8_float_io", "onnx_static_int8", "qat_tflite_int8", "qat_onnx_qdq",
                          "pqat_tflite_int8"]
    for name, a in arts.items():
        lin = a["lineage"]
        assert lin["training"]["method"] in ("float", "qat", "pqat") and "conversion" in lin, name
        assert 0 < a["gzip_bytes"] <= a["bytes"] * 1.01 and lin["file_weights"]["weights"] > 0, name
    assert arts["tflite_int8_float_io"]["lineage"]["calibration"] == {  # the entry's own size; TFLite's own method
        "source": "train", "size": 32, "dataset": "bundled MNIST", "method": "tflite_absolute_min_max"}
    assert arts["onnx_static_int8"]["lineage"]["calibration"]["method"] == "minmax"  # the export default
    for name in ("qat_tflite_int8", "pqat_tflite_int8"):  # QAT ranges are kept, not re-calibrated
        assert arts[name]["lineage"]["calibration"] is None and arts[name]["lineage"]["conversion"]["ranges"] == "qat"
    pqat = arts["pqat_tflite_int8"]["lineage"]
    assert pqat["training"]["settings"]["sparsity"] == 0.8 and pqat["training"]["first_phase"]["method"] == "prune"
    assert set(pqat["training"]["layers"]) >= set(pqat["training"]["counted_layers"])


def test_pruned_pqat_int8_file_keeps_its_zeros(recipe_run):
    from edgeport.export.file_stats import tflite_weight_stats

    a = _artifacts(recipe_run)["pqat_tflite_int8"]
    stats = tflite_weight_stats(recipe_run / a["path"])  # measured again from the file, not the manifest
    assert stats["overall_sparsity"] >= 0.79
    assert all(t["dtype"] == "int8" for t in stats["weight_tensors"].values())
    assert a["lineage"]["file_weights"]["overall_sparsity"] == stats["overall_sparsity"]
    assert a["gzip_bytes"] < _artifacts(recipe_run)["qat_tflite_int8"]["gzip_bytes"]  # the zeros compress


def test_quantised_onnx_files_hold_qdq_nodes(recipe_run):
    import onnx

    for name in ("qat_onnx_qdq", "onnx_static_int8"):
        ops = [n.op_type for n in onnx.load(str(recipe_run / _artifacts(recipe_run)[name]["path"])).graph.node]
        assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0, name
    conv = _artifacts(recipe_run)["onnx_static_int8"]["lineage"]["conversion"]
    assert conv["per_channel"] and conv["pre_process"] and conv["calibration"]["size"] == 32


def test_variant_budget_and_own_predictions_in_the_lineage(recipe_run):
    import numpy as np

    arts = _artifacts(recipe_run)
    assert arts["qat_onnx_qdq"]["lineage"]["max_drop"] == 0.5 and "max_drop" not in arts["pqat_tflite_int8"]["lineage"]
    rel = arts["qat_tflite_int8"]["lineage"]["source_predictions"]
    assert rel == "compressed/qat.probs.npz" and "source_predictions" not in arts["onnx_static_int8"]["lineage"]
    with np.load(recipe_run / rel, allow_pickle=False) as z:
        assert z["probs"].dtype == np.float32 and len(z["probs"]) == len(z["labels"])


def test_qat_onnx_is_int8_and_agrees_with_the_qat_tflite(recipe_run):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edgeport.pipeline import evaluate_run

    arts = _artifacts(recipe_run)
    model = onnx.load(str(recipe_run / arts["qat_onnx_qdq"]["path"]))
    onnx.checker.check_model(model)
    big = [numpy_helper.to_array(i) for i in model.graph.initializer if numpy_helper.to_array(i).size >= 64]
    assert big and all(w.dtype == np.int8 for w in big)
    assert arts["qat_onnx_qdq"]["bytes"] <= 1.3 * arts["onnx_static_int8"]["bytes"]
    assert arts["qat_onnx_qdq"]["lineage"]["conversion"]["int8_weights"] > 0
    assert arts["qat_onnx_qdq"]["lineage"]["conversion"]["activations_moved"] > 0
    from edgeport.export.qdq_fuse import float_layers_after_optimisation

    assert float_layers_after_optimisation(model.SerializeToString()) == []  # every layer an integer kernel
    report = evaluate_run(recipe_run, None)
    names = report["fidelity"]["names"]
    i, j = names.index("qat_onnx_qdq"), names.index("qat_tflite_int8")
    assert report["fidelity"]["pairwise_agreement"][i][j] >= 0.98
    rows = {r["name"]: r for r in report["artifacts"]}
    assert 0 <= rows["qat_onnx_qdq"]["delta"]["p_value"] <= 1 and rows["qat_onnx_qdq"]["agreement"] >= 0.98


def test_onnx_qdq_refuses_a_float_model(tiny_run, tmp_path):
    from edgeport.export.export import ExportConfig, export_model

    with pytest.raises(ExportError, match="onnx_qdq needs a quantisation-aware model"):
        export_model(tiny_run / "model.keras", tmp_path, ExportConfig(targets=("onnx_qdq",), validation_size=16))
    assert list((tmp_path / "artifacts").iterdir()) == []


def test_report_gains_the_rows_without_runtime_changes(recipe_run):
    from edgeport.pipeline import evaluate_run

    report = evaluate_run(recipe_run, None)
    rows = {r["name"]: r for r in report["artifacts"]}
    assert set(rows) == set(_artifacts(recipe_run))
    for name, row in rows.items():
        assert row["status"] == "ok" and 0 <= row["accuracy"] <= 1 and row["lineage"]["training"], name
    for name in ("tflite_int8_float_io", "onnx_static_int8"):  # post-training: the same model as the reference
        assert rows[name]["agreement"] >= 0.9, name


@pytest.mark.parametrize("value", [-0.1, "lots", float("inf")])
def test_bad_variant_max_drop(value):
    with pytest.raises(ConfigError, match=r"variant 1 \(float\): max_drop"):
        parse_recipe(_recipe({"method": "float", "targets": ["tflite_int8"], "max_drop": value}))


@pytest.mark.parametrize("resources, match", [
    ({"num_gpus": -1}, r"variant 1 \(float\): num_gpus must be >= 0, got -1"),
    ({"num_cpus": 0}, r"variant 1 \(float\): num_cpus must be > 0, got 0"),
    ({"num_cpus": "many"}, "num_cpus must be a number"),
])
def test_bad_resource_requests(resources, match):
    with pytest.raises(ConfigError, match=match):
        parse_recipe(_recipe({"method": "float", "targets": ["tflite_fp32"], **resources}), "my.toml")


def test_resource_requests_parse_per_variant_and_from_settings():
    recipe = parse_recipe(_recipe({"method": "float", "targets": ["tflite_fp32"]},
                                  {"method": "qat", "targets": ["tflite_int8"], "num_gpus": 1}, num_cpus=2), "my.toml")
    assert [(v.num_cpus, v.num_gpus) for v in recipe.variants] == [(2, None), (2, 1)]


def test_a_failing_variant_is_reported_and_the_others_are_kept(tiny_run, tmp_path, monkeypatch, capsys):
    """Here, as on Ray: a variant that raises is recorded under "failed" with its reason, the others are written,
    the report gets a failed row for each of its files, and `edgeport export` exits 1."""
    import edgeport.export.recipe as recipe_module
    from edgeport.cli import main
    from edgeport.pipeline import evaluate_run

    real = recipe_module.make_variant

    def make_variant(v, *args, **kwargs):
        if v.name == "broken":
            raise RuntimeError("disk on fire")
        return real(v, *args, **kwargs)

    monkeypatch.setattr(recipe_module, "make_variant", make_variant)
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "train.json", "reference.npz"):
        shutil.copy(tiny_run / name, run / name)
    (tmp_path / "r.toml").write_text('[[variant]]\nmethod = "float"\ntargets = ["tflite_fp32"]\n\n'
                                     '[[variant]]\nmethod = "float"\nname = "broken"\ntargets = ["onnx_fp32"]\n')
    assert main(["export", str(run), "--recipe", str(tmp_path / "r.toml")]) == 1
    assert "variant broken failed: RuntimeError: disk on fire" in capsys.readouterr().err
    manifest = json.loads((run / "manifest.json").read_text())
    assert [a["name"] for a in manifest["artifacts"]] == ["tflite_fp32"]
    assert manifest["artifacts"][0]["lineage"]["executor"]["kind"] == "local"
    (failed,) = manifest["failed"]
    assert failed["error"] == "RuntimeError: disk on fire" and failed["artifacts"][0]["name"] == "onnx_fp32"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no staging folder left
    rows = {r["name"]: r for r in evaluate_run(run, None)["artifacts"]}
    assert rows["onnx_fp32"]["status"] == "failed" and "broken was not made: RuntimeError" in rows["onnx_fp32"]["error"]


def test_qat_files_sensitivity_names_the_users_layers(recipe_run):
    """tfmot wraps each layer as quant_<name>; the table names the layers as the model does, as for other files.
    The QAT ONNX file too, whose ReLUs run on int8 values (Clip after QuantizeLinear): compared dequantised."""
    plain = {r["layer"] for r in _artifacts(recipe_run)["onnx_static_int8"]["sensitivity"]}
    for name in ("qat_tflite_int8", "pqat_tflite_int8", "qat_onnx_qdq"):
        rows = _artifacts(recipe_run)[name]["sensitivity"]
        assert rows and not any(r["layer"].startswith("quant_") for r in rows), name
        assert {r["layer"] for r in rows} & plain, name
    convs = {r["layer"]: r for r in _artifacts(recipe_run)["qat_onnx_qdq"]["sensitivity"] if r["op"] == "Conv"}
    assert len(convs) == 2  # the tiny model's two convs, each an int8 tensor after its ReLU: compared with its step
    assert all(r["rmse_over_scale"] is not None and r["sqnr_db"] > 10 for r in convs.values())
