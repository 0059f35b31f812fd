"""The `edgeport` command: a thin layer over the Python API. Handlers parse, call by keyword, print.

Every EdgeportError is caught here once and printed as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from edgeport.core.errors import ConfigError, EdgeportError


def _add_data_args(p: argparse.ArgumentParser, training: bool) -> None:
    """The dataset flags (edgeport.core.data.DataConfig): the same for every command that reads labelled images."""
    g = p.add_argument_group("data")
    g.add_argument("--data", "--data-dir", dest="data", default=None,
                   help="an IDX folder, an image folder (PATH/train/<class>/*.png, PATH/test/<class>/..., or "
                        "PATH/<class>/...), or a .npz with x_train, y_train, x_test, y_test (default: bundled MNIST)")
    g.add_argument("--labels", default=None, help="text file with one class name a line (IDX/.npz carry none)")
    g.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="convert every image to 1 (grayscale) or 3 (RGB) channels (default: as the data is)")
    g.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    g.add_argument("--skip-bad-images", action="store_true",
                   help="count and skip unreadable images in an image folder instead of stopping")
    if training:
        g.add_argument("--image-size", default=None, help="resize images to HxW, e.g. 32x32 (default: as they are)")
        g.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
        g.add_argument("--val-size", type=int, default=None,
                       help="validation images carved from the end of train (MNIST 5000; else 10%%, at most 5000)")
        g.add_argument("--test-fraction", type=float, default=None,
                       help="image folders without test/: the stratified share held out for testing (0.2)")
        g.add_argument("--preprocessing", choices=("mnist", "resize", "none"), default=None,
                       help="what image files go through before the model (default: mnist for MNIST, else resize)")
        g.add_argument("--resize", choices=("pad", "crop", "stretch"), default=None,
                       help="resize preprocessing: keep aspect and pad (default) or centre-crop, or stretch")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="a model name (default: default; see `edgeport models`), or your "
                                                 "own model: a .keras (Keras 3 or tf-keras), .h5 or SavedModel folder "
                                                 "(training is skipped)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 10)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    _add_data_args(p, training=True)
    p.add_argument("--augment-shift", type=int, default=None,
                   help="move each training image by up to N pixels, fresh each epoch (default 2; 0: off)")
    p.add_argument("--quick", action="store_true", help="small subset and one epoch: a smoke run of the same path")
    _add_strategy_arg(p)


def _add_import_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("your own model (--model FILE)", "how pixels become its input: a model file does not say")
    g.add_argument("--input-scale", default=None, metavar="S",
                   help="pixel (0..255) times S, e.g. 1/255 for [0, 1] or 1/127.5 with --mean 1 for [-1, 1] "
                        "(default: 1 when the model starts with a Rescaling layer, else 1/255)")
    g.add_argument("--mean", default=None, help="subtracted after scaling: one number or one per channel, e.g. "
                                                "0.485,0.456,0.406")
    g.add_argument("--std", default=None, help="divided after the mean: one number or one per channel")


def is_model_file(value: str | None) -> bool:
    """True when --model names a file or folder to import rather than a registered model name."""
    from edgeport.train.models import MODELS

    if not value or value in MODELS:
        return False
    return Path(value).expanduser().exists() or value.lower().endswith((".keras", ".h5", ".hdf5")) or "/" in value


def _import_config(args, data):
    """ImportConfig from --model FILE, the data settings and the pixel-scaling flags."""
    from edgeport.train.bring import ImportConfig

    for flag in ("epochs", "batch_size", "augment_shift", "seed"):
        if getattr(args, flag, None) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} sets up training; --model {args.model} imports a trained "
                              "model, so nothing is trained (fine-tunes take their settings from the recipe)")
    return ImportConfig(model=args.model, data=data, scale=_scale(args.input_scale),
                        mean=_floats(args.mean, "--mean"), std=_floats(args.std, "--std"))


def _scale(value: str | None) -> float | None:
    """Parse --input-scale: a float or "a/b" with float parts (1/255, 1/127.5, 0.5/127.5)."""
    if value is None:
        return None
    import math

    parts = value.strip().split("/")
    try:
        if len(parts) > 2:
            raise ValueError(value)
        scale = float(parts[0]) if len(parts) == 1 else float(parts[0]) / float(parts[1])
    except (ValueError, ZeroDivisionError):
        raise ConfigError(
            f"--input-scale takes a number or a fraction such as 1/255 or 1/127.5, got {value!r}") from None
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"--input-scale must be a finite number > 0, got {value!r}")
    return scale


def _floats(value: str | None, flag: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag} takes one number or comma-separated numbers, got {value!r}") from None
    if len(out) not in (1, 3):
        raise ConfigError(f"{flag} takes one number or one per channel (3), got {value!r}")
    return out


def _no_model_flags(args) -> None:
    """The pixel-scaling flags describe an imported model; a trained one takes the dataset's scaling."""
    for flag in ("input_scale", "mean", "std"):
        if getattr(args, flag, None) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} describes your own model's input; it needs --model FILE")


def _add_strategy_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", default=None, help="tf.distribute for training and fine-tunes: auto (mirrored when "
                                                    "more than one GPU is visible, default), mirrored, multi-worker "
                                                    "(reads TF_CONFIG) or none")


def _add_ray_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help=f"run {what} as Ray tasks: HOST:PORT of a `ray start --head` cluster, auto (RAY_ADDRESS or "
                        "the cluster started on this machine) or local (start one in this process); needs "
                        "edgeport[scale]")


def _executor(args):
    """The Ray executor for --ray (connected for the block), or None without it: then Ray is never imported."""
    if not getattr(args, "ray", None):
        return contextlib.nullcontext(None)
    from edgeport.scale import RayConfig, connect

    return connect(RayConfig(address=args.ray))


DATA_FLAGS = {"data": "path", "labels": "labels", "channels": "channels", "test_limit": "test_limit",
              "skip_bad_images": "skip_bad_images", "image_size": "image_size", "train_limit": "train_limit",
              "val_size": "val_size", "test_fraction": "test_fraction", "preprocessing": "preprocessing",
              "resize": "resize"}


def _data_config(args, base=None):
    """DataConfig from `base` (defaults, or --quick's) and the data flags given."""
    from dataclasses import replace

    from edgeport.core.data import DataConfig
    from edgeport.core.spec import parse_image_size

    given = {a: getattr(args, a, None) for a in DATA_FLAGS}  # 0 is a value (--val-size 0: no validation split)
    changes = {f: given[a] for a, f in DATA_FLAGS.items() if given[a] is not None and given[a] is not False}
    if "image_size" in changes:
        changes["image_size"] = parse_image_size(changes["image_size"])
    return replace(base or DataConfig(), **changes)


def _add_calibration_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration-method", default=None, metavar="M",
                   help="onnx_static_int8's calibrator: minmax (default), percentile or entropy (onnxruntime's). "
                        "TFLite's converter has no choice: it always takes each tensor's absolute min/max")
    p.add_argument("--calibration-curve", action="store_true",
                   help="also convert each calibrated int8 target of the reference model with 10, 50, 100, 500 "
                        "and 1000 calibration images and plot accuracy on the validation split in the report "
                        "(costs one conversion per point)")


def _add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=None, help="timed batch-1 runs per artifact (default 200)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 20)")
    p.add_argument("--threads", default=None, help="comma-separated engine thread counts to measure (default 1,2)")
    p.add_argument("--batch-sizes", default=None, help="comma-separated throughput batch sizes (default 1,32,256)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds per latency/throughput measurement instead of a fixed --runs count")
    p.add_argument("--memory-repeats", type=int, default=None,
                   help="fresh processes measuring each model's own peak memory (default 3; 0: skip)")


def _add_device_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("devices", "also benchmark on devices over SSH; each runs its own `pip install "
                                        "edgeport` runtime, and the report shows them beside this machine")
    g.add_argument("--device", action="append", default=None, metavar="URL",
                   help="ssh://[user@]host[:port] (repeatable); keys, agent and ~/.ssh/config are used as by ssh")
    g.add_argument("--device-name", action="append", default=None, metavar="NAME",
                   help="the device's name in the report, once per --device (default: its host name)")
    g.add_argument("--device-python", action="append", default=None, metavar="PATH",
                   help="the device's Python with edgeport installed (default python3; e.g. ~/venv/bin/python); "
                        "once for every device or once per --device")
    g.add_argument("--devices", default=None, metavar="FILE",
                   help="TOML file of devices: [[device]] url, name, python, timeout; [settings] python, timeout, "
                        "ssh_config")
    g.add_argument("--device-timeout", type=float, default=None, metavar="S",
                   help="seconds per device for connecting, copying and benchmarking (default 900)")
    g.add_argument("--ssh-config", default=None, metavar="FILE", help="ssh client configuration (ssh -F FILE)")
    g.add_argument("--insecure-accept-host-key", action="store_true",
                   help="do not verify the devices' host keys (said in the output and the report)")


def _targets(value: str | None):
    return tuple(t.strip() for t in value.split(",") if t.strip()) if value else None


def _configs(args):
    """Build (train, export, bench) configs from defaults, --quick, then explicit flags, in that order."""
    from dataclasses import replace

    from edgeport.export.export import ExportConfig
    from edgeport.pipeline import BenchConfig, quick_configs
    from edgeport.train.fit import TrainConfig

    tc, ec, bc = quick_configs() if getattr(args, "quick", False) else (TrainConfig(), ExportConfig(), BenchConfig())
    tflags = {"model": "model", "epochs": "epochs", "batch_size": "batch_size", "seed": "seed", "strategy": "strategy",
              "augment_shift": "augment_shift"}
    tc = replace(tc, data=_data_config(args, tc.data),
                 **{f: getattr(args, a) for a, f in tflags.items() if getattr(args, a, None) is not None})
    if getattr(args, "targets", None):
        ec = replace(ec, targets=_targets(args.targets))
    if getattr(args, "calibration_size", None) is not None:
        ec = replace(ec, calibration_size=args.calibration_size)
    if getattr(args, "calibration_method", None) is not None:
        ec = replace(ec, calibration_method=args.calibration_method)
    if getattr(args, "calibration_curve", False):
        ec = replace(ec, calibration_curve=True)
    if getattr(args, "budget_max_drop", None) is not None:  # export/run: the int8 budget and verify's, one meaning
        ec = replace(ec, max_drop=_max_drop(args.budget_max_drop))
    if getattr(args, "no_sensitivity", False):
        ec = replace(ec, sensitivity=False)
    bflags = {"runs": "runs", "warmup": "warmup", "time_budget": "time_budget_s", "memory_repeats": "memory_repeats"}
    bc = replace(bc, **{f: getattr(args, a) for a, f in bflags.items() if getattr(args, a, None) is not None})
    for flag in ("threads", "batch_sizes"):
        if getattr(args, flag, None) is not None:
            bc = replace(bc, **{flag: _int_list(getattr(args, flag), "--" + flag.replace("_", "-"))})
    return tc, ec, bc


def _max_drop(value: str) -> float:
    """--max-drop: a number of percentage points >= 0, else a one-line ConfigError naming the value."""
    try:
        points = float(value)
    except ValueError:
        raise ConfigError(f"--max-drop takes a number of percentage points, got {value!r}") from None
    if not 0 <= points < float("inf"):
        raise ConfigError(f"--max-drop is in percentage points and must be a finite number >= 0, got {value!r}")
    return points


def _int_list(value: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated whole numbers, e.g. 1,2; got {value!r}") from None


def _recipe(args, by_default: bool):
    """The recipe to run: --recipe FILE ("default": the packaged one), or with `by_default` and no --targets the
    default recipe (the full compression matrix); None: plain --targets export."""
    if args.recipe and args.targets:
        raise ConfigError("--recipe and --targets both choose what to export; give one of them")
    if not args.recipe and (args.targets or not by_default):
        return None
    from edgeport.export.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    if args.calibration_size is not None and recipe.sets("calibration_size"):
        raise ConfigError(f"--calibration-size conflicts with calibration_size in {recipe.source}; set it in one place")
    if getattr(args, "budget_max_drop", None) is not None and recipe.sets("max_drop"):
        raise ConfigError(f"--max-drop conflicts with max_drop in {recipe.source}; set it in one place")
    return recipe


def cmd_run(args) -> int:
    from edgeport.pipeline import run_pipeline
    from edgeport.runtime.report import print_table

    imported = is_model_file(args.model)
    if imported:
        model, args.model = args.model, None  # the registry name stays the default; the file is imported
        tc, ec, bc = _configs(args)
        args.model = model
        ic = _import_config(args, tc.data)
    else:
        _no_model_flags(args)
        tc, ec, bc = _configs(args)
        ic = None
    recipe = _recipe(args, by_default=not args.quick)  # --quick: the three basic files unless --recipe is given
    default_name = Path(args.model.rstrip("/")).stem if imported else ("quick" if args.quick else "mnist")
    out = Path(args.out) if args.out else Path("runs") / (args.name or default_name)
    tc.validate()  # a bad --strategy or TF_CONFIG before connecting to anything
    with _executor(args) as executor:
        report = run_pipeline(out, train_cfg=tc, export_cfg=ec, bench_cfg=bc, recipe=recipe, executor=executor,
                              import_cfg=ic)
    if report.get("worker"):
        print(f"multi-worker: this worker trained and fine-tuned in sync ({report['pipeline_seconds']:.0f} s); "
              "the chief writes the run folder and the report")
        return 0
    print_table(report)
    for note in report.get("notes") or []:
        print(f"edgeport: note: {note}", file=sys.stderr)
    failed = [r["name"] for r in report["artifacts"] if r["status"] != "ok"]
    if failed:
        print(f"edgeport: failed: {', '.join(failed)} (reasons in {out / 'report.md'})", file=sys.stderr)
    print(f"report: {out / 'report.md'} ({report['pipeline_seconds']:.0f} s)")
    if not failed:
        return 0
    from edgeport.core.manifest import MANIFEST, read_manifest

    return max(1, _failed_exit(read_manifest(out).get("failed") or [] if (out / MANIFEST).is_file() else []))


def cmd_train(args) -> int:
    from edgeport.core.run import RunFolder
    from edgeport.train.fit import train

    if is_model_file(args.model):
        raise ConfigError(f"edgeport train trains a registered model; to bring {args.model}, use "
                          f"`edgeport export --model {args.model} --data PATH --out DIR` (or `edgeport run --model`)")
    tc, _, _ = _configs(args)
    tc.validate()  # a bad --strategy or TF_CONFIG before the old run's report is cleared
    out = Path(args.out)
    from edgeport.core import files

    RunFolder(files.ensure_writable_dir(out)).clear_run()  # an earlier run's files must not pass for this one's
    result = train(tc, out)
    if not result.chief:
        print(f"multi-worker: this worker trained in sync (test accuracy {result.test_accuracy:.2%}, "
              f"{result.seconds:.0f} s); the chief writes the run folder")
        return 0
    print(f"model: {result.model_path}  test accuracy {result.test_accuracy:.2%}  ({result.seconds:.0f} s)")
    return 0


def cmd_export(args) -> int:
    from edgeport.export.export import export_run

    _, ec, _ = _configs(args)
    recipe = _recipe(args, by_default=False)
    ec.validate()
    from edgeport.export.calibration_curve import check_curve

    check_curve(ec, recipe)  # before a --model FILE is imported
    strategy = args.strategy or "auto"
    from edgeport.train.distribute import check_strategy

    check_strategy(strategy)
    if args.model is not None:  # bring your own model: import it into --out, then export as from a run folder
        if args.run_dir is not None:
            raise ConfigError("give a run folder, or --model FILE with --out DIR, not both")
        if not args.out:
            raise ConfigError(f"--model {args.model} needs --out DIR: the run folder to make")
        if not is_model_file(args.model):
            raise ConfigError(f"--model {args.model}: no such file or folder (.keras, .h5 or a SavedModel folder)")
        ic = _import_config(args, _data_config(args))
        args.run_dir = args.out
    else:
        _no_model_flags(args)
        if args.run_dir is None:
            raise ConfigError("give a run folder (made by edgeport train), or --model FILE --data PATH --out DIR")
        if args.data:
            raise ConfigError("--data goes with --model FILE; a run folder's data is the one it was made with")
        ic = None
    with _executor(args) as executor:
        if executor is not None:
            executor.check(recipe, ec, strategy)
        if ic is not None:
            from edgeport.pipeline import import_checks
            from edgeport.train.bring import import_model

            result = import_model(ic, args.run_dir, check=import_checks(ec, recipe))  # before any file is replaced
            for note in result.notes:
                print(f"edgeport: note: {note}", file=sys.stderr)
            print(f"reference: {result.model_path}  test accuracy {result.test_accuracy:.2%}")
        path = export_run(args.run_dir, ec, recipe=recipe, executor=executor, strategy=strategy)
    from edgeport.core.manifest import read_manifest

    manifest = read_manifest(args.run_dir)
    for a in manifest["artifacts"]:
        print(f"{a['name']:<20} {a['path']:<34} {a['bytes'] / 1024:8.1f} KB")
    failed = manifest.get("failed") or []
    for f in failed:
        what = "not exported" if f.get("target") else f"variant {f['variant']} failed"
        print(f"edgeport: {what}: {f['error']}", file=sys.stderr)
    made = len(manifest["artifacts"])
    print(f"manifest: {path} ({made} file(s) made" + (f", {len(failed)} failed)" if failed else ")"))
    return _failed_exit(failed)


def _failed_exit(failed: list[dict]) -> int:
    """0 when nothing failed; 2 when a --max-drop budget could not be met (the user's value, like any bad input);
    else 1 (a file failed the gate or a variant failed)."""
    if any(f.get("kind") == "budget" for f in failed):
        return 2
    return 1 if failed else 0


def _eval_or_bench(args, bench: bool) -> int:
    from edgeport.pipeline import Answers
    from edgeport.runtime.report import print_table, write_report

    _, _, bc = _configs(args)
    paths = [Path(p) for p in args.path]
    run_dir = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
    if run_dir is None and any(p.is_dir() for p in paths):
        raise ConfigError("give one run folder, or one or more model files, not both")
    devices = _devices(args) if bench else None
    answers = Answers() if args.predictions else None
    data = _data_config(args) if args.data else None
    if data is not None and getattr(args, "test_fraction", None) is None:  # a flat class folder: all test images
        from dataclasses import replace

        data = replace(data, whole=True)
    if devices:
        from edgeport.remote import RemoteConfig, bench_with_devices

        devs, ssh_config = devices
        remote = RemoteConfig(ssh_config=args.ssh_config or ssh_config,
                              insecure_accept_host_key=args.insecure_accept_host_key)
        report = bench_with_devices(paths, devs, bc, remote, data=data, limit=args.test_limit, answers=answers)
    elif run_dir is not None:
        if args.data:  # evaluate_run reads the run's own data (train.json): --data would be silently ignored
            raise ConfigError(f"--data {args.data}: a run folder is evaluated on the data it was made with; to "
                              f"evaluate its files on other images, give the files: edgeport "
                              f"{'bench' if bench else 'eval'} {run_dir / 'artifacts'}/*.tflite ... --data "
                              f"{args.data}")
        from edgeport.pipeline import evaluate_run

        with _executor(args) as executor:
            report = evaluate_run(run_dir, bc if bench else None, answers=answers, executor=executor)
    else:
        if getattr(args, "ray", None):
            raise ConfigError("--ray evaluates a run folder's files as tasks; give a run folder, not model files")
        from edgeport.pipeline import evaluate_files

        report = evaluate_files(paths, data=data, bench_cfg=bc if bench else None, limit=args.test_limit,
                                answers=answers)
    if answers is not None:
        report["predictions"] = {name: top1.tolist() for name, top1 in answers.predictions.items()}
    if run_dir is not None:
        write_report(run_dir, report)
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
        if devices:
            from edgeport.runtime.report_devices import print_devices

            print_devices(report)
    for note in report.get("notes") or []:
        print(f"edgeport: note: {note}", file=sys.stderr)
    ok = all(r["status"] == "ok" for r in report["artifacts"])
    if devices and not any(d["status"] == "ok" for d in report["devices"] if not d.get("local")):
        ok = False  # a device benchmark where no device answered
    return 0 if ok else 1


def _devices(args):
    """(devices, ssh_config from a devices file) for --device/--devices, or None when none was asked for."""
    if not (args.device or args.devices):
        for flag in ("device_name", "device_python", "device_timeout", "ssh_config"):
            if getattr(args, flag):
                raise ConfigError(f"--{flag.replace('_', '-')} needs --device or --devices")
        return None
    from edgeport.remote import devices_from_args

    return devices_from_args(args.device, args.device_name, args.device_python, args.devices, args.device_timeout)


def cmd_predict(args) -> int:
    from edgeport.runtime.predict import predict_files

    result = predict_files(args.model, args.images, top=args.top, preprocess=not args.no_preprocess)
    for note in result.notes:
        print(f"edgeport: note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    for p in result.predictions:
        if p.error is not None:
            print(f"edgeport: error: {p.error}", file=sys.stderr)
        elif not args.json:
            print(f"{p.path}: " + "  ".join(f"{label} {prob:6.1%}" for label, prob in p.top))
    return 2 if any(p.error is not None for p in result.predictions) else 0


def cmd_serve(args) -> int:
    from edgeport.serve import ServeConfig, serve

    serve(args.run_dir, ServeConfig(host=args.host, port=args.port))
    return 0


def cmd_verify(args) -> int:
    from edgeport.verify import VerifyConfig, verify_run

    cfg = VerifyConfig(max_drop=_max_drop(args.max_drop), min_agreement=args.min_agreement,
                       significant=args.significant)
    verdict = verify_run(args.run_dir, cfg)
    if args.json:
        print(json.dumps(verdict.to_dict(), indent=2))
    else:
        for a in verdict.artifacts:
            acc = "-" if a.accuracy is None else f"{a.accuracy:.2%}"
            agr = "-" if a.agreement is None else f"{a.agreement:.2%}"
            cost = "" if a.drop_points is None else (f"  drop {a.drop_points:.2f} pt (budget {a.budget_points:g}"
                                                     + (f", p={a.p_value:.2g})" if a.p_value is not None else ")"))
            print(f"{'PASS' if a.passed else 'FAIL'}  {a.name:<24} accuracy {acc:>7}  agreement {agr:>7}{cost}")
    for a in verdict.artifacts:
        if not a.passed:
            print(f"edgeport: verify failed: {a.name}: {'; '.join(a.reasons)}", file=sys.stderr)
    return 0 if verdict.passed else 1


def cmd_models(args) -> int:
    from edgeport.export.targets import TARGETS, target_names
    from edgeport.train.models import MODELS

    print("models:  " + ", ".join(sorted(MODELS)) + "  (or your own: --model FILE.keras | FILE.h5 | SavedModel/)")
    print("targets:")
    for name in target_names():
        print(f"  {name:<16} {TARGETS[name].description}")
    return 0


def _add_budget_args(p) -> None:
    p.add_argument("--max-drop", dest="budget_max_drop", default=None, metavar="POINTS",
                   help="int8 files may lose at most this many accuracy points against the float model they were "
                        "converted from, measured on the validation split: the most sensitive layers stay in float "
                        "until they do (tflite_int8, tflite_int8_float_io, onnx_static_int8); also the budget "
                        "`edgeport verify` checks")
    p.add_argument("--no-sensitivity", action="store_true",
                   help="skip the per-layer sensitivity table of int8 files")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeport", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train (or bring your own model), export, evaluate and benchmark in one go")
    _add_train_args(p)
    _add_import_args(p)
    _add_bench_args(p)
    p.add_argument("--name", default=None, help="run name: output goes to runs/NAME (default: mnist, or the model "
                                                "file's name)")
    p.add_argument("--out", default=None, help="output folder (overrides --name)")
    p.add_argument("--targets", default=None, help="comma-separated export targets (see `edgeport models`)")
    p.add_argument("--calibration-size", type=int, default=None, help="int8 calibration images (default 500)")
    _add_calibration_args(p)
    _add_budget_args(p)
    p.add_argument("--recipe", default=None, help="compression recipe TOML (default: the packaged full matrix "
                                                  "unless --targets is given)")
    _add_ray_arg(p, "each recipe variant and each evaluation")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("train", help="train a model into a run folder")
    _add_train_args(p)
    p.add_argument("--out", required=True, help="run folder to write")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("export", help="export a run folder's model (or your own: --model FILE --data PATH --out DIR) "
                                      "and write manifest.json")
    p.add_argument("run_dir", nargs="?", default=None, help="run folder made by edgeport train")
    p.add_argument("--model", default=None, metavar="FILE",
                   help="your own model instead of a run folder: .keras (Keras 3 or tf-keras), .h5 or a SavedModel "
                        "folder; it becomes the reference of a new run folder --out")
    p.add_argument("--out", default=None, help="the run folder to make with --model")
    _add_data_args(p, training=True)
    _add_import_args(p)
    p.add_argument("--targets", "--target", default=None, help="comma-separated export targets (c-array: C array)")
    p.add_argument("--calibration-size", type=int, default=None, help="int8 calibration images (default 500)")
    _add_calibration_args(p)
    _add_budget_args(p)
    p.add_argument("--recipe", default=None, help="compression recipe TOML, or 'default' for the full matrix")
    _add_strategy_arg(p)
    _add_ray_arg(p, "each recipe variant")
    p.set_defaults(fn=cmd_export)

    for name, bench in (("eval", False), ("bench", True)):
        p = sub.add_parser(name, help=f"{'evaluate' if not bench else 'evaluate and benchmark'} a run folder "
                                      "or one .tflite/.onnx file (TensorFlow not needed)")
        p.add_argument("path", nargs="+", help="run folder (with manifest.json), or one or more model files")
        _add_data_args(p, training=False)
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        p.add_argument("--predictions", action="store_true",
                       help="add each file's top-1 class per test image to the report (how devices are compared)")
        _add_bench_args(p)
        _add_ray_arg(p, "each file's evaluation (benchmarks: one task on one node)")
        if bench:
            _add_device_args(p)
        p.set_defaults(fn=lambda a, b=bench: _eval_or_bench(a, b))

    p = sub.add_parser("predict", help="classify image files with a .tflite/.onnx model (TensorFlow not needed)")
    p.add_argument("model", help="a .tflite or .onnx file; labels, size and scaling are read from it")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...) of any size")
    p.add_argument("--top", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--no-preprocess", action="store_true",
                   help="images are already the model's size (and look like its training images): only decode them")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser("serve", help="local web page that runs the run's exported files in the browser")
    p.add_argument("run_dir", help="run folder with manifest.json")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("verify", help="CI gate: fail unless every exported file keeps the reference's accuracy "
                                      "and answers (TensorFlow not needed)")
    p.add_argument("run_dir", help="run folder with manifest.json and reference.npz")
    p.add_argument("--max-drop", default="0.3",
                   help="largest accuracy drop vs the Keras reference, in percentage points (default 0.3); "
                        "a recipe variant's own max_drop takes its place")
    p.add_argument("--significant", action="store_true",
                   help="fail an accuracy drop over budget only when it is significant (McNemar exact, p < 0.05)")
    p.add_argument("--min-agreement", type=float, default=0.995,
                   help="smallest top-1 agreement with the reference, a fraction (default 0.995)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(fn=cmd_verify)

    p = sub.add_parser("models", help="list model names and export targets")
    p.set_defaults(fn=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for flag in ("epochs", "runs", "train_limit", "test_limit", "calibration_size"):
            value = getattr(args, flag, None)
            if value is not None and value < (0 if flag == "warmup" else 1):
                raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
        return args.fn(args)
    except EdgeportError as exc:
        print(f"edgeport: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        partial = getattr(exc, "partial", None)  # a benchmark interrupted: show what it measured so far
        if partial is not None:
            from edgeport.runtime.report import print_partial

            print_partial(partial, as_json=getattr(args, "json", False))
        print("edgeport: interrupted; finished files are complete, unfinished ones were not written"
              + ("; the measurements so far are above (no report written)" if partial is not None else ""),
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
