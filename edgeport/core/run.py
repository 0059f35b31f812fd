"""A run folder as every stage reads it: paths, the training record, the data it names and the input spec, read once.

    runs/NAME/
      train.json      how the reference model came to be: trained here (config) or imported (source file),
                      the data settings (`data`, a DataConfig), the `input_spec`, the dataset fingerprint
      model.keras     the reference model (or the imported file's copy, named in train.json `model_path`)
      reference.npz   the reference model's test-set probabilities and the labels they were made on
      artifacts/      exported files; manifest.json lists them (written last); report.* (written last)
      calibration_curve.json   with --calibration-curve: accuracy on val vs calibration images, per target
      model_explorer/ each quantised file's per-layer sensitivity as Model Explorer node data (written with the report)

Stages pass each other this folder, never live objects; `RunFolder` is how they all open it, so the data
settings are derived one way (from train.json) and the dataset is loaded once per process.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import numpy as np

from edgeport.core import files
from edgeport.core.data import DataConfig, Dataset, load_dataset
from edgeport.core.errors import OutputError
from edgeport.core.manifest import MANIFEST, read_manifest
from edgeport.core.spec import InputSpec

TRAIN_RECORD = "train.json"
REFERENCE = "reference.npz"
DEFAULT_MODEL = "model.keras"
REPORTS = ("report.json", "report.md", "report.html")
MODEL_EXPLORER = "model_explorer"  # the report's per-file sensitivity as Model Explorer node data (a folder)
CALIBRATION_CURVE = "calibration_curve.json"  # --calibration-curve: accuracy vs calibration images (export writes)
# What a run writes, and so what a new reference model (trained or imported) into the same folder replaces.
OWNED_FILES = (TRAIN_RECORD, DEFAULT_MODEL, REFERENCE, "history.json", "curves.png", MANIFEST, CALIBRATION_CURVE,
               *REPORTS)
# wholly edgeport's: exported, imported, fine-tuned models; the report's Model Explorer node data
OWNED_DIRS = ("artifacts", "source", "compressed", MODEL_EXPLORER)


def data_record(cfg: DataConfig, data: Dataset, run_dir: str | Path) -> dict:
    """train.json's "data" and "dataset" fields. A data path given relative (`--data shapes`) is stored relative to
    the run folder, so the run still finds it from another working directory; one given absolute stays as given.
    The fingerprint names the dataset as the user gave it: a machine's absolute path is not the run's to record
    (it would end up in every exported file's metadata)."""
    path = cfg.path
    if path is not None and not Path(path).expanduser().is_absolute():
        path = os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())
    return {"data": replace(cfg, path=path).to_dict(), "data_path_base": "run",
            "dataset": data.fingerprint() | {"source": cfg.path or data.source}}


class RunFolder:
    """One run folder. Cheap to make; each file is read on first use and kept."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._base = self.path  # what a run-relative data path is relative to (a staged copy keeps the run's)
        self._datasets: dict[tuple, Dataset] = {}

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def record(self) -> dict:
        """train.json, or {} for a folder that has none (files exported elsewhere)."""
        p = self.path / TRAIN_RECORD
        return files.read_json(p, "training record (train.json)") if p.is_file() else {}

    @property
    def model_name(self) -> str | None:
        return self.record.get("model_name")

    @property
    def model_path(self) -> Path:
        """The reference model: model.keras for a trained run, the imported copy for `--model FILE` runs."""
        return self.path / self.record.get("model_path", DEFAULT_MODEL)

    @property
    def reference_format(self) -> str:
        """tf_keras (trained here, or imported and loadable by tf-keras: tfmot can fine-tune it), keras3 or
        saved_model (an imported model kept as it is: post-training targets only)."""
        return self.record.get("reference_format", "tf_keras")

    @property
    def data_config(self) -> DataConfig:
        """The data settings the run was made with (older train.json kept them in the training config); a data path
        recorded relative to the run folder (`data_record`) is resolved against it."""
        rec = self.record
        cfg = DataConfig.from_dict(rec["data"] if "data" in rec else rec.get("config"))
        if rec.get("data_path_base") == "run" and cfg.path is not None and not Path(cfg.path).is_absolute():
            cfg = replace(cfg, path=os.path.normpath(self._base / cfg.path))
        return cfg

    def resolved_record(self) -> dict:
        """train.json with the data path resolved, for a copy of the run made elsewhere (a Ray task's folder)."""
        return {**self.record, "data": self.data_config.to_dict(), "data_path_base": None}

    @property
    def dataset_label(self) -> str:
        """The dataset as the user named it (`--data shapes`), for the manifest and the exported files' metadata."""
        return (self.record.get("dataset") or {}).get("source") or self.dataset().source

    def dataset(self, test_limit: int | None = None) -> Dataset:
        """The run's dataset, loaded once per process (`test_limit` keeps only the first N test images)."""
        key = (test_limit,)
        if key not in self._datasets:
            data = load_dataset(self.data_config, test_limit=test_limit)
            recorded = (self.record.get("dataset") or {}).get("files_sha256")
            if recorded and data.files and recorded != data.files:
                changed = sorted(k for k in set(recorded) | set(data.files) if recorded.get(k) != data.files.get(k))
                note = (f"the data changed since this run was made ({', '.join(changed)} differ from "
                        f"{TRAIN_RECORD}'s fingerprint): figures may not compare")
                data = replace(data, notes=(*data.notes, note))
            self._datasets[key] = data
        return self._datasets[key]

    @cached_property
    def spec(self) -> InputSpec:
        """The reference model's input spec: train.json's, else the dataset's (runs made before specs existed)."""
        if "input_spec" in self.record:
            return InputSpec.from_dict(self.record["input_spec"], f"{self.path / TRAIN_RECORD}: input_spec")
        return self.dataset().spec

    def staged(self, path: str | Path) -> RunFolder:
        """This run (training record, data, input spec, loaded once) writing under `path` instead: the staging folder
        of one task's outputs, moved into the run folder when complete."""
        other = RunFolder(path)
        other.__dict__["record"] = self.record  # the cached_property's slot
        other._base = self._base
        other._datasets = self._datasets
        return other

    def manifest(self) -> dict:
        return read_manifest(self.path)

    def has_manifest(self) -> bool:
        return (self.path / MANIFEST).is_file()

    def reference(self, labels: np.ndarray | None = None) -> np.ndarray | None:
        """The reference model's test-set probabilities (None when the run has none), checked against `labels`."""
        path = self.path / REFERENCE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                probs, ref_labels = z["probs"], z["labels"]
        except (OSError, KeyError, ValueError) as exc:
            raise OutputError(f"{path}: unreadable reference predictions ({exc})") from None
        if labels is not None and (len(ref_labels) != len(labels) or not np.array_equal(ref_labels, labels)):
            raise OutputError(f"{path}: reference predictions were made on a different test set")
        return probs

    def write_reference(self, probs: np.ndarray, labels: np.ndarray) -> Path:
        """reference.npz, atomically (np.savez on a path would append .npz to the temporary name)."""
        path = self.path / REFERENCE
        with files.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, probs=np.asarray(probs, np.float32), labels=np.asarray(labels, np.int64))
        return path

    def clear_run(self, keep: Path | None = None) -> list[str]:
        """Remove everything an earlier run wrote here (OWNED_FILES, OWNED_DIRS, leftover staging folders) before a
        new reference model is written, and say so in one line; return what was removed. Files edgeport did not
        write stay. A folder holding those names without an edgeport record (train.json or manifest.json) is not
        a run folder: ConfigError, nothing removed. `keep`: the model file being imported, refused if inside."""
        import shutil
        import sys

        from edgeport.core.errors import ConfigError

        present = [n for n in (*OWNED_FILES, *OWNED_DIRS) if (self.path / n).exists()]
        present += sorted(p.name for p in self.path.glob(".staging-*") if p.is_dir())
        if not present:
            return []
        if not ((self.path / TRAIN_RECORD).is_file() or (self.path / MANIFEST).is_file()):
            raise ConfigError(f"{self.path}: holds {', '.join(present[:4])} but is not an edgeport run folder (no "
                              f"{TRAIN_RECORD} or {MANIFEST}); give a new or empty --out so nothing of yours is "
                              "replaced")
        if keep is not None and any(keep.resolve().is_relative_to((self.path / n).resolve()) for n in present):
            raise ConfigError(f"{keep}: the model to import is part of the earlier run in {self.path}, which this "
                              "run replaces; copy it elsewhere or give another --out")
        earlier = self.record.get("model_name") if (self.path / TRAIN_RECORD).is_file() else None
        for name in present:
            target = self.path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        shown = [f"{n}/" if n in OWNED_DIRS else n for n in present if not n.startswith(".")]
        print(f"edgeport: note: {self.path} held an earlier run" + (f" (of {earlier})" if earlier else "")
              + f": replaced {', '.join(shown)}; other files there were left as they are", file=sys.stderr)
        self.__dict__.pop("record", None)  # the cached train.json is gone with it
        self._datasets.clear()
        return present

    def start_export(self) -> None:
        """Remove what describes the earlier export as a new one starts: the manifest (an export in progress must not
        look complete), the reports and the Model Explorer data (they describe the files this export replaces)."""
        import sys

        (self.path / MANIFEST).unlink(missing_ok=True)
        gone = [n for n in REPORTS if (self.path / n).is_file()]
        gone += [f"{MODEL_EXPLORER}/"] if (self.path / MODEL_EXPLORER).is_dir() else []
        for name in REPORTS:
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / MODEL_EXPLORER, ignore_errors=True)
        if gone:
            print(f"edgeport: note: removed the earlier {', '.join(gone)}: they describe the files this export "
                  f"replaces; `edgeport eval {self.path}` writes new ones", file=sys.stderr)

    def clear_downstream(self) -> None:
        """Remove what describes an older model (manifest, reports) once the reference model changes."""
        for name in (MANIFEST, CALIBRATION_CURVE, *REPORTS):
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / MODEL_EXPLORER, ignore_errors=True)
