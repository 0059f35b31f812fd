"""Recipes: one TOML file naming the variants to make. A variant = a training-time method + conversion targets.

    [settings]                      # defaults for every variant (each may override them)
    epochs = 1.0                    # fine-tune length, passes over the training split
    calibration_size = 500          # optional: otherwise the export config's (500; 100 with --quick)
    keep_float = ["conv2d"]         # optional: Keras layers its int8 files keep in float (export/budget.py)

    [[variant]]
    method = "pqat"                 # float | prune | sparse_2_4 | cluster | qat | pqat | cqat
    sparsity = 0.8
    targets = ["tflite_int8"]       # names from `edgeport models`
    num_gpus = 1                    # optional: what its Ray task asks for (num_cpus too); ignored without --ray

Every entry is checked before any work starts: unknown keys, methods or targets (listing the valid ones),
values out of range, and methods that cannot apply to the model (2:4 where no layer qualifies, QAT on a
layer tfmot cannot quantise). Errors name the recipe file and the entry. `export_recipe` makes each variant
with `make_variant`: fine-tune (train/compress.py), export its targets with validate-after-write, measure the
weights in every written file, all into a staging folder moved into the run folder once complete. The variants
run here one after another, or on an executor (edgeport.scale: Ray tasks) that returns the same results. A
variant that fails is recorded in the manifest with the reason and the others still complete. manifest.json is
written last with each artifact's full lineage, including where it was made (`executor`).
"""

from __future__ import annotations

import platform
import re
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from edgeport.core import files
from edgeport.core.errors import ConfigError, EdgeportError
from edgeport.core.manifest import Artifact, write_manifest
from edgeport.core.run import RunFolder
from edgeport.export.export import ExportConfig, TargetFailure, export_model, failure_entry, manifest_header
from edgeport.train.compress import FINE_TUNE_SETTINGS, QUANTISED, SETTINGS, CompressConfig, Method

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package (pyproject pulls it in there)
    import tomli as tomllib

DEFAULT_RECIPE = Path(__file__).parent / "recipes" / "default.toml"
COMPRESSED_DIR = "compressed"  # fine-tuned models, one per non-float variant
EXPORT_SETTINGS = ("calibration_size", "calibration_source", "keep_float")  # per variant
RESOURCE_SETTINGS = ("num_cpus", "num_gpus")  # per variant: the Ray task's resource request (--ray only)
VERIFY_SETTINGS = ("max_drop",)  # per variant: the accuracy cost `edgeport verify` allows, in points
SHARED_SETTINGS = ("sparsity", "clusters", *FINE_TUNE_SETTINGS, *EXPORT_SETTINGS, *RESOURCE_SETTINGS,
                   *VERIFY_SETTINGS)
TOP_LEVEL = ("settings", "variant")
QAT_TARGETS = ("tflite_int8", "tflite_int8_float_io", "onnx_qdq")  # keep a QAT model's own int8 ranges
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Variant:
    name: str  # the compressed model's file stem and the artifacts' name prefix ("" for float)
    compress: CompressConfig
    targets: tuple[str, ...]
    calibration_size: int | None  # None: the export config's
    calibration_source: str | None  # None: the export config's
    label: str  # how errors name this entry: "recipe.toml: variant 3 (pqat)"
    num_cpus: float | None = None  # CPUs its Ray task asks for; None: 1
    num_gpus: float | None = None  # GPUs its Ray task asks for; None: 0
    max_drop: float | None = None  # accuracy cost vs the reference verify allows, in points; None: --max-drop
    keep_float: tuple[str, ...] | None = None  # Keras layers its int8 files keep in float; None: the config's

    @property
    def prefix(self) -> str:
        return "" if self.compress.method is Method.FLOAT else f"{self.name}_"


@dataclass(frozen=True)
class Recipe:
    source: str  # the file it came from
    variants: tuple[Variant, ...]
    settings: dict  # the [settings] table as written

    def sets(self, key: str) -> bool:
        """True when the recipe sets `key` anywhere (so a command-line flag for it would conflict)."""
        return key in self.settings or any(getattr(v, key, None) is not None for v in self.variants)

    def artifact_names(self) -> list[str]:
        return [f"{v.prefix}{t}" for v in self.variants for t in v.targets]


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Parse and check a recipe file (None or "default": the packaged default recipe)."""
    p = DEFAULT_RECIPE if path in (None, "default") else Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: recipe file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: not a readable TOML recipe ({exc})") from None
    return parse_recipe(raw, str(p))


def parse_recipe(raw: dict, source: str = "recipe") -> Recipe:
    from edgeport.export.targets import get_target

    _only(raw, TOP_LEVEL, source)
    settings = raw.get("settings", {})
    if not isinstance(settings, dict):
        raise ConfigError(f"{source}: [settings] must be a table")
    _only(settings, SHARED_SETTINGS, f"{source}: [settings]")
    entries = raw.get("variant")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: no [[variant]] entries; each needs a method and targets")
    variants, names = [], set()
    for i, entry in enumerate(entries, 1):
        where = f"{source}: variant {i}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table")
        method = _method(entry.get("method"), where)
        where = f"{where} ({entry.get('name', method.value)})"
        allowed = ("name", "method", "targets", *SETTINGS[method], *EXPORT_SETTINGS, *RESOURCE_SETTINGS,
                   *VERIFY_SETTINGS, *(FINE_TUNE_SETTINGS if method is not Method.FLOAT else ()))
        _only(entry, allowed, where, method)
        values = {k: v for k, v in settings.items() if k in allowed} | entry
        name = values.get("name", method.value)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}: name must be lower-case letters, digits and _, got {name!r}")
        if name in names:
            raise ConfigError(f"{where}: name {name!r} is used twice; give each variant its own name")
        names.add(name)
        targets = values.get("targets")
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            raise ConfigError(f"{where}: targets must be a non-empty list of target names")
        try:
            targets = tuple(get_target(t).name for t in targets)
            if "onnx_qdq" in targets and method not in QUANTISED:
                raise ConfigError(f"target onnx_qdq needs a QAT model (method {', '.join(m.value for m in QUANTISED)})")
            other = [t for t in targets if t not in QAT_TARGETS]
            if method in QUANTISED and other:
                raise ConfigError(f"target(s) {', '.join(other)} quantise on their own terms, over the QAT model's "
                                  f"trained ranges; a {method.value} model takes: {', '.join(QAT_TARGETS)}")
            cfg = CompressConfig(method=method, **{k: _number(values[k], k) for k in
                                                   (*SETTINGS[method], *FINE_TUNE_SETTINGS) if k in values})
            cfg.validate()
            export = {k: values.get(k) for k in EXPORT_SETTINGS}
            if export["keep_float"] is not None:
                export["keep_float"] = _layer_list(export["keep_float"])
            ExportConfig(targets=targets, **{k: v for k, v in export.items() if v is not None}).validate()
            resources = {k: _resource(values[k], k) for k in RESOURCE_SETTINGS if k in values}
            if "max_drop" in values:
                max_drop = _number(values["max_drop"], "max_drop")
                if not 0 <= max_drop < float("inf"):
                    raise ConfigError(f"max_drop is in percentage points and must be a finite number >= 0, got "
                                      f"{max_drop!r}")
                resources["max_drop"] = float(max_drop)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        variants.append(Variant(name=name, compress=cfg, targets=targets, label=where, **export, **resources))
    recipe = Recipe(source=source, variants=tuple(variants), settings=dict(settings))
    seen = set()
    for art in recipe.artifact_names():
        if art in seen:
            raise ConfigError(f"{source}: artifact {art!r} would be written twice")
        seen.add(art)
    return recipe


def plain_recipe(cfg: ExportConfig) -> Recipe:
    """`cfg.targets` from the trained model as it is: a one-variant recipe, for an executor to run."""
    float_cfg = CompressConfig(method=Method.FLOAT)
    return Recipe(source="--targets", settings={}, variants=(Variant(
        name="float", compress=float_cfg, targets=tuple(cfg.targets), calibration_size=None, calibration_source=None,
        label="--targets"),))


def _only(table: dict, allowed, where: str, method: Method | None = None) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        why = f" for method {method.value!r}" if method is not None else ""
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}{why}; "
                          f"valid: {', '.join(allowed)}")


def _method(value, where: str) -> Method:
    valid = ", ".join(m.value for m in Method)
    try:
        return Method(value)
    except ValueError:
        raise ConfigError(f"{where}: unknown method {value!r}; expected one of: {valid}") from None


def _number(value, key: str):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    return value


def _layer_list(value) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"keep_float must be a list of Keras layer names, got {value!r}")
    return tuple(value)


def _resource(value, key: str) -> float:
    value = _number(value, key)
    if value < 0 or (key == "num_cpus" and value == 0):
        raise ConfigError(f"{key} must be {'> 0' if key == 'num_cpus' else '>= 0'}, got {value!r}")
    return value


# ---- running a recipe -----------------------------------------------------------------------------------------


@dataclass
class VariantResult:
    """One variant made (its artifacts, paths relative to the run folder) or failed (`error`)."""

    name: str
    artifacts: list[Artifact] = field(default_factory=list)
    error: str | None = None  # None: made; else the reason, one line
    phase: dict | None = None  # a prune/cluster fine-tune pqat/cqat may start from: {"file", "lineage"}
    failed_targets: list[TargetFailure] = field(default_factory=list)  # made, but these targets failed the gate
    executor: dict = field(default_factory=dict)  # where and how long: kind, node_id, host, task_id, seconds

    @property
    def ok(self) -> bool:
        return self.error is None


def make_variant(v: Variant, run: RunFolder, cfg: ExportConfig, stage: Path, compressor=None) -> VariantResult:
    """Fine-tune (unless float), convert, validate and measure one variant of `run`'s reference model, writing only
    under `stage` (laid out like a run folder: compressed/, artifacts/). `compressor` (train.compress.Compressor)
    is needed unless float.

    An EdgeportError (a sparsity target missed, a file that fails validation) is the same on every attempt, so it
    comes back as a failed result; anything else propagates, a crash the caller may retry."""
    from edgeport.export.file_stats import weight_stats

    training = {"method": "float", "model": run.model_name}
    source, phase = run.model_path, None
    try:
        if v.compress.method is not Method.FLOAT:
            print(f"compress {v.name}: {v.compress.method.value} {v.compress.settings()}", file=sys.stderr)
            result = compressor.run(v.compress, files.ensure_writable_dir(stage / COMPRESSED_DIR), v.name)
            source = result.path
            probs = result.lineage.pop("source_predictions", None)
            training = {"model": run.model_name, "variant": v.name,
                        "source_model": result.path.relative_to(stage).as_posix(), **result.lineage}
            if probs is not None:
                training["source_predictions"] = (result.path.parent / probs).relative_to(stage).as_posix()
            memo = compressor.phase(v.compress)
            if memo is not None:
                phase = {"file": training["source_model"], "lineage": memo}
        ecfg = replace(cfg, targets=v.targets, **{k: getattr(v, k) for k in EXPORT_SETTINGS
                                                  if getattr(v, k) is not None})
        failed: list[TargetFailure] = []
        artifacts = export_model(source, run.staged(stage), ecfg, training=training, prefix=v.prefix, failed=failed)
    except EdgeportError as exc:
        return VariantResult(v.name, error=str(exc))
    for art in artifacts:
        conversion = art.lineage.get("conversion", {})
        art.lineage["calibration"] = conversion.get("calibration")
        art.lineage["file_weights"] = weight_stats(stage / art.path)
        if v.max_drop is not None:
            art.lineage["max_drop"] = v.max_drop
        if "source_predictions" in training:  # fidelity is measured against the model the file was converted from
            art.lineage["source_predictions"] = training["source_predictions"]
    return VariantResult(v.name, artifacts, phase=phase, failed_targets=failed)


def export_recipe(run_dir: str | Path, recipe: Recipe, cfg: ExportConfig = ExportConfig(), executor=None,
                  strategy: str = "auto") -> Path:
    """Make every variant of `recipe` from the run's model.keras; write manifest.json last; return its path.

    `cfg` gives what the recipe leaves unset (calibration size/source, validation sample). Nothing is trained
    or written before every entry has been checked against the model. `executor` (None: here, one variant
    after another) makes the variants elsewhere: `executor.make_variants(run, recipe, cfg, strategy)` returns one
    VariantResult per variant, in recipe order, with its files already in the run folder, and `executor.describe()`
    what it is. `strategy` is the tf.distribute strategy of the fine-tunes.
    A failed variant, and each target of a made variant that failed the validation gate, is listed under "failed"
    in the manifest with its reason; the others are kept.
    """
    from edgeport.core.environment import package_versions
    from edgeport.train.bridge import user_names
    from edgeport.train.compress import Compressor, check_applicable

    run = RunFolder(run_dir)
    check_keep_float_layers(run, recipe)
    renamed = (run.record.get("bridge") or {}).get("renamed") or {}
    compressor = None
    if any(v.compress.method is not Method.FLOAT for v in recipe.variants):
        check_fine_tunable(run, recipe)
        compressor = Compressor(run.model_path, run.dataset(), spec=run.spec, strategy=strategy)
        for v in recipe.variants:  # every user error before any work
            try:
                check_applicable(compressor.base, v.compress)
            except ConfigError as exc:  # in the user's layer names where the bridge renamed any
                raise ConfigError(f"{v.label}: {user_names(str(exc), renamed)}") from None
    run.start_export()
    if executor is None:
        if any(v.num_cpus is not None or v.num_gpus is not None for v in recipe.variants):
            print(f"edgeport: note: num_cpus/num_gpus in {recipe.source} are Ray resource requests; "
                  "without --ray every variant runs here, one after another", file=sys.stderr)
        results = [_make_here(run, v, cfg, compressor) for v in recipe.variants]
        where = {"kind": "local", "host": platform.node()}
    else:
        results = executor.make_variants(run, recipe, cfg, strategy)
        where = executor.describe()
    artifacts, failed = [], []
    for v, r in zip(recipe.variants, results, strict=True):
        for art in r.artifacts:
            art.lineage["executor"] = r.executor
        artifacts += r.artifacts
        if not r.ok:
            r.error = user_names(r.error, renamed)
            print(f"edgeport: {v.label} failed: {r.error}", file=sys.stderr)
            failed.append(_failure(v, r))
        failed += [failure_entry(f, v.name, v.compress.method.value, r.executor) for f in r.failed_targets]
    return write_manifest(
        run.path, artifacts, **manifest_header(run),
        export_config={k: v for k, v in asdict(cfg).items() if k != "targets"},  # the recipe names the targets
        recipe={"source": recipe.source, "settings": recipe.settings,
                "variants": [{"name": v.name, **{f.name: getattr(v, f.name) for f in fields(v)
                                                 if f.name not in ("name", "compress", "label")},
                              "compress": {"method": v.compress.method.value, **v.compress.settings()}}
                             for v in recipe.variants]},
        executor=where,
        failed=failed,
        packages=package_versions(),
    )


def check_keep_float_layers(run: RunFolder, recipe: Recipe) -> None:
    """Every layer a variant's keep_float names must be a layer of the run's model, before any work."""
    wanted = [v for v in recipe.variants if v.keep_float]
    if not wanted:
        return
    from edgeport.export.layers import check_keep_float, layer_names
    from edgeport.train.compress import load_model

    layers = layer_names(load_model(run.model_path))
    for v in wanted:
        check_keep_float(v.keep_float, layers, v.label)


def check_keep_float_source(model, cfg, recipe: Recipe | None) -> None:
    """Before an imported model replaces an earlier run: every keep_float name (the config's, each variant's) is a
    layer of `model` as loaded, nested blocks' layers included, also as BLOCK_name (the rebuild's name for a
    layer name repeated across blocks); the run's own model is checked again before export."""
    from edgeport.export.layers import check_keep_float, layer_names

    wanted = [(tuple(cfg.keep_float), "keep_float")] if cfg.keep_float else []
    wanted += [(v.keep_float, v.label) for v in (recipe.variants if recipe else ()) if v.keep_float]
    if not wanted:
        return

    def names(m) -> list[str]:
        found = []
        for layer in getattr(m, "layers", []):
            found.append(layer.name)
            inner = names(layer) if hasattr(layer, "layers") else []
            found += inner + [f"{layer.name}_{n}" for n in inner]
        return found

    known, shown = set(names(model)), layer_names(model)
    for keep, where in wanted:
        check_keep_float(tuple(n for n in keep if n not in known), shown, where)


def check_fine_tunable(run: RunFolder, recipe: Recipe) -> None:
    """Training-time methods fine-tune with tfmot, which takes tf-keras models only: refuse them, naming the first
    such variant and why, when the run's reference is an imported model the Keras 3 bridge did not rebuild."""
    if run.reference_format == "tf_keras":
        return
    v = next(v for v in recipe.variants if v.compress.method is not Method.FLOAT)
    why = (run.record.get("bridge") or {}).get("error") or "a SavedModel is a graph, not Keras layers"
    raise ConfigError(f"{v.label}: method {v.compress.method.value} fine-tunes a tf-keras model, and this run's "
                      f"reference {run.model_path.name} could not be rebuilt as one ({why}); keep to float variants")


def _make_here(run: RunFolder, v: Variant, cfg: ExportConfig, compressor) -> VariantResult:
    """`make_variant` in this process, staged in the run folder and moved in when complete. A crash is reported as
    the variant's failure (with its traceback on stderr), as a Ray run reports one after its retries."""
    t0 = time.perf_counter()
    with files.staging_dir(run.path, v.name) as stage:
        try:
            result = make_variant(v, run, cfg, stage, compressor)
        except Exception as exc:
            traceback.print_exc()
            result = VariantResult(v.name, error=crash_reason(exc))
        if result.ok:
            files.commit_staged(stage, run.path)
    result.executor = {"kind": "local", "node_id": None, "host": platform.node(), "task_id": None,
                       "seconds": round(time.perf_counter() - t0, 2)}
    return result


def crash_reason(exc: BaseException) -> str:
    """One line for an unexpected exception: its type and first line."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else 'no message'}"


def _failure(v: Variant, r: VariantResult) -> dict:
    """The manifest's record of a variant that was not made: the artifacts it would have written, and why."""
    from edgeport.export.targets import get_target

    targets = [get_target(t) for t in v.targets]
    return {"variant": v.name, "method": v.compress.method.value, "error": r.error, "executor": r.executor,
            "artifacts": [{"name": f"{v.prefix}{t.name}", "format": t.format, "precision": t.precision}
                          for t in targets]}
