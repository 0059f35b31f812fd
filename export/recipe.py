"""Recipes: one TOML file naming the variants to make. A variant = a training-time method + conversion targets.

    [settings]                      # defaults for every variant (each may override them)
    epochs = 1.0                    # fine-tune length, passes over the training split
    calibration_size = 500          # optional: otherwise the export config's (500; 100 with --quick)

    [[variant]]
    method = "pqat"                 # float | prune | sparse_2_4 | cluster | qat | pqat | cqat
    sparsity = 0.8
    targets = ["tflite_int8"]       # names from `edgeport models`

Every entry is checked before any work starts: unknown keys, methods or targets (listing the valid ones),
values out of range, and methods that cannot apply to the model (2:4 where no layer qualifies, QAT on a
layer tfmot cannot quantise). Errors name the recipe file and the entry. `export_recipe` fine-tunes each
method once (train/compress.py), exports its targets with validate-after-write, measures the weights in
every written file, and writes manifest.json last with each artifact's full lineage.
"""

from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from edgeport.core import files
from edgeport.core.errors import ConfigError, EdgeportError
from edgeport.core.manifest import MANIFEST, write_manifest
from edgeport.core.run import RunFolder
from edgeport.export.export import ExportConfig, export_model, manifest_header
from edgeport.train.compress import FINE_TUNE_SETTINGS, QUANTISED, SETTINGS, CompressConfig, Method

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package (pyproject pulls it in there)
    import tomli as tomllib

DEFAULT_RECIPE = Path(__file__).parent / "recipes" / "default.toml"
COMPRESSED_DIR = "compressed"  # fine-tuned models, one per non-float variant
EXPORT_SETTINGS = ("calibration_size", "calibration_source")  # per variant
SHARED_SETTINGS = ("sparsity", "clusters", *FINE_TUNE_SETTINGS, *EXPORT_SETTINGS)
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
        allowed = ("name", "method", "targets", *SETTINGS[method], *EXPORT_SETTINGS,
                   *(FINE_TUNE_SETTINGS if method is not Method.FLOAT else ()))
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
            ExportConfig(targets=targets, **{k: v for k, v in export.items() if v is not None}).validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        variants.append(Variant(name=name, compress=cfg, targets=targets, label=where, **export))
    recipe = Recipe(source=source, variants=tuple(variants), settings=dict(settings))
    seen = set()
    for art in recipe.artifact_names():
        if art in seen:
            raise ConfigError(f"{source}: artifact {art!r} would be written twice")
        seen.add(art)
    return recipe


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


# ---- running a recipe -----------------------------------------------------------------------------------------


def export_recipe(run_dir: str | Path, recipe: Recipe, cfg: ExportConfig = ExportConfig()) -> Path:
    """Make every variant of `recipe` from the run's model.keras; write manifest.json last; return its path.

    `cfg` gives what the recipe leaves unset (calibration size/source, validation sample). Nothing is trained
    or written before every entry has been checked against the model.
    """
    from edgeport.core.environment import package_versions
    from edgeport.export.file_stats import weight_stats
    from edgeport.train.compress import Compressor, check_applicable

    run = RunFolder(run_dir)
    (run.path / MANIFEST).unlink(missing_ok=True)  # an export in progress must not look complete
    model_path = run.model_path
    needs_training = any(v.compress.method is not Method.FLOAT for v in recipe.variants)
    compressor = None
    if needs_training:
        compressor = Compressor(model_path, run.dataset(), spec=run.spec)
        for v in recipe.variants:  # every user error before any work
            try:
                check_applicable(compressor.base, v.compress)
            except ConfigError as exc:
                raise ConfigError(f"{v.label}: {exc}") from None
    artifacts = []
    for v in recipe.variants:
        source, training = model_path, {"method": "float", "model": run.model_name}
        if v.compress.method is not Method.FLOAT:
            print(f"compress {v.name}: {v.compress.method.value} {v.compress.settings()}", file=sys.stderr)
            try:
                result = compressor.run(v.compress, files.ensure_writable_dir(run.path / COMPRESSED_DIR), v.name)
            except EdgeportError as exc:
                raise type(exc)(f"{v.label}: {exc}") from None
            source = result.path
            training = {"model": run.model_name, "variant": v.name,
                        "source_model": str(result.path.relative_to(run.path)), **result.lineage}
        ecfg = replace(cfg, targets=v.targets, **{k: getattr(v, k) for k in EXPORT_SETTINGS
                                                  if getattr(v, k) is not None})
        for art in export_model(source, run, ecfg, training=training, prefix=v.prefix):
            conversion = art.lineage.get("conversion", {})
            art.lineage["calibration"] = conversion.get("calibration")
            art.lineage["file_weights"] = weight_stats(run.path / art.path)
            artifacts.append(art)
    return write_manifest(
        run.path, artifacts, **manifest_header(run),
        export_config={k: v for k, v in asdict(cfg).items() if k != "targets"},  # the recipe names the targets
        recipe={"source": recipe.source, "settings": recipe.settings,
                "variants": [{"name": v.name, **{f.name: getattr(v, f.name) for f in fields(v)
                                                 if f.name not in ("name", "compress", "label")},
                              "compress": {"method": v.compress.method.value, **v.compress.settings()}}
                             for v in recipe.variants]},
        packages=package_versions(),
    )
