"""Accuracy-budgeted mixed precision: keep the most sensitive layers in float until an int8 file loses at most
`max_drop` points on the validation split (never the test set) against the float model it was converted from.

The loop (after NNCF's accuracy control, with the sensitivity table as its ranking): convert full int8; measure the
validation drop; if above the budget, rank the layers by their per-channel SQNR in that file (export/sensitivity.py,
worst first) and keep them in float one at a time, re-converting, until the drop is within budget; then try
dropping each kept layer again (last added first) and keep it int8 where the budget still holds, so the set is as
small as this greedy search finds. The set found for one format is tried first, whole, for the next one, so
TFLite and ONNX keep the same layers when that set meets the budget in both (else more are added by rank).
No set meeting the budget: a BudgetError naming the best drop found, and the target writes nothing (the command
exits 2 at the end: the user's value cannot be met).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edgeport.core.errors import BudgetError, ConfigError
from edgeport.export.layers import check_keep_float, layer_names

MIXED_TARGETS = ("tflite_int8", "tflite_int8_float_io", "web_tflite_int8",  # converters that honour keep_float
                 "onnx_static_int8")
CARVE_SEED = 0  # without a validation split, this seeded share of train measures the budget


def budget_split(ctx) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 images, labels, where from): the first `budget_size` validation images; without a validation split,
    a seeded random part of train beyond the calibration images. Never the test set."""
    key = "budget_split"
    if key not in ctx.cache:
        data, size = ctx.run.dataset(), ctx.cfg.budget_size
        if len(data.val_images):
            ctx.cache[key] = (data.val_images[:size], data.val_labels[:size], "val")
        else:
            pool = np.arange(min(ctx.cfg.calibration_size, len(data.train_images)), len(data.train_images))
            pick = np.sort(np.random.default_rng(CARVE_SEED).permutation(pool)[:size])
            ctx.cache[key] = (data.train_images[pick], data.train_labels[pick], f"train (seeded {len(pick)})")
    return ctx.cache[key]


def budget_targets(cfg, recipe=None) -> list[str]:
    """The targets a budget `cfg.max_drop` would act on: mixed-capable targets of the plain export or of every
    recipe variant but the QAT ones (their files keep their trained ranges)."""
    from edgeport.train.compress import QUANTISED

    if recipe is None:
        return [t for t in cfg.targets if t in MIXED_TARGETS]
    return [t for v in recipe.variants if v.compress.method not in QUANTISED for t in v.targets if t in MIXED_TARGETS]


def check_budget(cfg, targets: list[str], dataset) -> None:
    """Before anything is converted or an earlier run replaced: a ConfigError when `cfg.max_drop` would act on
    `targets` (budget_targets) but the split it is measured on cannot resolve it. `dataset`: a callable giving the
    run's Dataset, called only when there is a budget to check (loading it costs time)."""
    if cfg.max_drop is None or not targets:
        return
    data = dataset()
    more = None
    if len(data.val_images):
        available, where = len(data.val_images), "validation split"
        own = next((f for f in data.files if data.kind == "folder" and f.rstrip("/") in ("val", "validation")), None)
        if own is not None:  # the folder's own split: --val-size does not change it
            more = f"about {{n}} images in {Path(data.source) / own.rstrip('/')}/"
    else:  # budget_split's seeded carve from train, past the calibration images
        available, where = max(0, len(data.train_images) - cfg.calibration_size), "seeded part of train"
    check_resolvable(cfg.max_drop, min(cfg.budget_size, available), where=where, available=available,
                     cap=cfg.budget_size, more=more)


def check_resolvable(max_drop: float, n: int, flag: str = "--max-drop", where: str = "validation split",
                     available: int | None = None, cap: int | None = None, more: str | None = None) -> None:
    """A ConfigError when `n` images cannot resolve a drop of `max_drop` points, saying what would: a larger budget,
    or how many validation images (at most `cap` of the `available` ones are used; `more`: where they would go,
    with {n} for the number, when not --val-size)."""
    from edgeport.runtime.stats import resolvable_points

    smallest = resolvable_points(n) if n else float("inf")
    if smallest <= max_drop:
        return
    k = round(resolvable_points(1) / 100)  # images that must all go one way for McNemar's test to see a change
    used = f"the {n} images it is measured on ({where}"
    used += f", the first {n} of {available})" if available is not None and available > n else ")"
    resolves = f"they resolve no difference under {smallest:.2f} points ({k} images all going one way)" if n else (
        "there are none")
    if max_drop == 0:
        fix = "a drop of exactly 0 cannot be shown on any number of images; give a budget in points"
    else:
        needed = int(np.ceil(k * 100 / max_drop))
        where_more = (more or "about {n} validation images (--val-size {n})").format(n=needed)
        fix = (f"give {flag} {smallest:.2f} or more, or {where_more}"
               if cap is None or needed <= cap else
               f"a budget is measured on at most {cap} images (ExportConfig.budget_size): give {flag} "
               f"{smallest:.2f} or more" + (f" ({resolvable_points(cap):.2f} with {cap} validation images)"
                                            if n < cap else ""))
    if n and max_drop == 0:
        fix += f" ({smallest:.2f} or more here)"
    raise ConfigError(f"{flag} {max_drop:g}: too fine for {used}: {resolves}; {fix}")


def convert_within_budget(target, model, path: Path, ctx) -> dict:
    """Run `target`'s converter into `path`; for an int8 target with a budget, keep layers in float until the
    validation drop is within `ctx.cfg.max_drop`. Returns the conversion settings, with `kept_float`,
    `int8_mac_share` and `budget` for a mixed-capable target."""
    cfg = ctx.cfg
    forced = tuple(cfg.keep_float)
    from edgeport.export.tflite_export import is_qat

    # a QAT model keeps its trained int8 ranges: nothing to keep in float
    mixed = (target.name in MIXED_TARGETS and (cfg.max_drop is not None or forced)
             and not (hasattr(model, "layers") and is_qat(model)))
    if mixed:
        check_keep_float(forced, layer_names(model), "keep_float")
        if cfg.max_drop is not None:  # before any conversion: can the split measure the budget at all?
            check_resolvable(cfg.max_drop, len(budget_split(ctx)[0]), cap=cfg.budget_size)
    ctx.keep_float = forced if mixed else ()
    conversion = _convert(target, model, path, ctx)
    if not mixed:
        return conversion
    budget = None
    if cfg.max_drop is not None:
        conversion, kept, budget = _search(target, model, path, ctx, conversion, forced)
    else:
        kept = list(forced)
    return {**conversion, "kept_float": kept, "int8_mac_share": int8_mac_share(path), "budget": budget}


def _convert(target, model, path: Path, ctx) -> dict:
    """One conversion with the converters' own chatter kept off the terminal (the search's progress stays)."""
    from edgeport.train.tf import quiet_conversion

    with quiet_conversion():
        return target.fn(model, path, ctx)


def _search(target, model, path: Path, ctx, conversion: dict, forced: tuple[str, ...]):
    images, labels, source = budget_split(ctx)
    float_acc = _float_accuracy(model, ctx, images, labels)
    tries: list[dict] = []
    limit = ctx.cfg.max_drop

    def measure(kept: list[str]) -> float:
        drop = (float_acc - _file_accuracy(path, images, labels, target.format, ctx.metadata)) * 100
        tries.append({"kept_float": list(kept), "drop": round(drop, 3)})
        print(f"  {target.name}: {len(kept)} layer(s) in float {kept}: validation drop {drop:.2f} points",
              file=sys.stderr)
        return drop

    def attempt(kept: list[str]) -> float:
        nonlocal conversion, in_file
        ctx.keep_float = tuple(kept)
        conversion, in_file = _convert(target, model, path, ctx), list(kept)
        return measure(kept)

    kept, in_file, ranking = list(forced), list(forced), []
    drop = measure(kept)  # the file as first converted
    if drop > limit:
        ranking = _ranking(path, model, ctx, images)  # the full-int8 file's sensitivity, worst first
        shared = [x for x in ctx.cache.get("kept_float", []) if x not in kept]  # what the other format kept
        if shared:
            kept += shared
            drop = attempt(kept)
        if drop > limit:
            for layer in [x for x in ranking if x not in kept]:
                kept.append(layer)
                drop = attempt(kept)
                if drop <= limit:
                    break
        if drop > limit:
            best = min(tries, key=lambda t: t["drop"])
            raise BudgetError(f"{target.name}: no set of layers kept in float brings the validation drop within "
                              f"--max-drop {limit:g} points; best {best['drop']:.2f} points keeping "
                              f"{', '.join(best['kept_float']) or 'none'} in float")
        if not shared:  # a smaller set where the budget still holds, last added first
            for layer in [x for x in reversed(kept) if x not in forced]:
                trial = [x for x in kept if x != layer]
                seen = [t["drop"] for t in tries if set(t["kept_float"]) == set(trial)]
                if (seen[0] if seen else attempt(trial)) <= limit:
                    kept = trial
        drop = attempt(kept) if in_file != kept else tries[-1]["drop"]
    ctx.cache["kept_float"] = list(kept)
    budget = {"max_drop": limit, "validation_drop": round(drop, 3), "float_accuracy": round(float_acc, 5),
              "split": source, "images": int(len(images)), "tries": tries, "ranking": ranking}
    return conversion, kept, budget


def _ranking(path: Path, model, ctx, images: np.ndarray) -> list[str]:
    """Layers worst first by per-channel SQNR in the full-int8 file at `path`."""
    from edgeport.export.sensitivity import layer_sensitivity

    return [r["layer"] for r in layer_sensitivity(path, model, ctx.spec.normalise(images))]


def _float_accuracy(model, ctx, images: np.ndarray, labels: np.ndarray) -> float:
    key = ("float_accuracy", id(model))
    if key not in ctx.cache:
        probs = np.asarray(model.predict(ctx.spec.normalise(images), verbose=0, batch_size=256))
        ctx.cache[key] = float((probs.argmax(1) == labels).mean())
    return ctx.cache[key]


def _file_accuracy(path: Path, images: np.ndarray, labels: np.ndarray, fmt: str, metadata: dict) -> float:
    """The file's accuracy on uint8 `images`, read with the run's input spec: embedded first, as the export will
    (without it the runtime assumes 1/255 scaling, wrong for a model taking raw pixels or mean/std)."""
    from edgeport.export.metadata import embed_metadata
    from edgeport.runtime import load

    embed_metadata(path, fmt, metadata)
    return float((load(path).predict(images).argmax(1) == labels).mean())


def int8_mac_share(path: Path) -> float | None:
    """Share of the file's multiply-accumulates done by int8 ops (runtime/macs.py); None when not countable."""
    from edgeport.runtime.macs import count_macs

    count = count_macs(path)
    if not count.macs or count.int8_macs is None:
        return None
    return round(count.int8_macs / count.macs, 4)
