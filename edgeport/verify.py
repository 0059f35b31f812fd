"""The CI gate: re-measure every artifact of a run folder and fail unless each keeps the reference's answers.

`edgeport verify RUN_DIR --max-drop 0.3 --min-agreement 0.995` evaluates every file in the manifest afresh
on the run's test set (the report could be stale, the file could have changed since) and checks, per file:
it loads and runs; its sha256 still matches the manifest; its accuracy is at most `max_drop` percentage
points below the Keras reference's (a variant's own `max_drop` from its lineage, when the recipe set one;
with `significant`, a drop over budget fails only when McNemar's exact test gives p < 0.05);
its top-1 agreement with the reference is at least `min_agreement`.
No TensorFlow: it needs only the runtime and reference.npz, which the train stage writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeport.core import files
from edgeport.core.errors import ConfigError, OutputError


@dataclass(frozen=True)
class VerifyConfig:
    max_drop: float = 0.3  # largest accuracy drop allowed vs the Keras reference, in percentage points
    min_agreement: float = 0.995  # smallest share of test images with the reference's top-1 class
    check_sha256: bool = True  # fail a file that changed since export (its manifest sha256 no longer matches)
    significant: bool = False  # fail an accuracy drop over budget only when McNemar's exact test says p < 0.05

    def __post_init__(self):
        if not 0 <= self.max_drop < float("inf"):
            raise ConfigError(f"--max-drop is in percentage points and must be a finite number >= 0, got "
                              f"{self.max_drop}")
        if not 0 <= self.min_agreement <= 1:
            raise ConfigError(f"--min-agreement is a fraction in [0, 1], got {self.min_agreement}")


@dataclass
class ArtifactVerdict:
    name: str
    passed: bool
    accuracy: float | None = None
    drop_points: float | None = None  # (reference accuracy - accuracy) * 100
    budget_points: float | None = None  # the drop allowed: the variant's lineage max_drop, else --max-drop
    p_value: float | None = None  # McNemar's exact test of the change against the reference
    agreement: float | None = None
    reasons: list[str] = field(default_factory=list)  # why it failed; empty when it passed


@dataclass
class Verdict:
    run: str
    reference_accuracy: float
    config: VerifyConfig
    artifacts: list[ArtifactVerdict]

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.artifacts)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {"run": self.run, "passed": self.passed, "reference_accuracy": self.reference_accuracy,
                "config": asdict(self.config), "artifacts": [asdict(a) for a in self.artifacts]}


def verify_run(run_dir: str | Path, cfg: VerifyConfig = VerifyConfig()) -> Verdict:
    """Evaluate every artifact of `run_dir` and judge it against `cfg`. Raises OutputError when the run has no
    manifest or no reference predictions to compare with; a failing artifact is a verdict, not an error."""
    from edgeport.core.manifest import read_manifest
    from edgeport.pipeline import evaluate_run

    run = Path(run_dir)
    manifest = read_manifest(run)
    if not (run / "reference.npz").is_file():
        raise OutputError(f"{run}: no reference.npz here; verify compares every file with the Keras model's "
                          "predictions, which `edgeport train` writes")
    report = evaluate_run(run, bench_cfg=None)
    ref_acc = report["reference"]["accuracy"]
    sha = {a["name"]: a.get("sha256") for a in manifest["artifacts"]}
    verdicts = []
    for row in report["artifacts"]:
        v = ArtifactVerdict(row["name"], True)
        if row.get("status") != "ok" and row.get("path") is None:  # the manifest's "failed": never written
            v.reasons.append(row.get("error") or "not exported")
        elif row.get("status") != "ok":
            v.reasons.append(f"failed to load or run: {row.get('error', row.get('status'))}")
        else:
            v.accuracy, v.agreement = row["accuracy"], row["agreement"]
            v.drop_points = (ref_acc - row["accuracy"]) * 100
            budget = (row.get("lineage") or {}).get("max_drop")
            v.budget_points = cfg.max_drop if budget is None else float(budget)
            delta = row.get("delta") or {}
            v.p_value = delta.get("p_value")
            noise = cfg.significant and v.p_value is not None and v.p_value >= 0.05
            if v.drop_points > v.budget_points + 1e-9 and not noise:
                v.reasons.append(f"accuracy {row['accuracy']:.2%} is {v.drop_points:.2f} points below the "
                                 f"reference {ref_acc:.2%} (allowed {v.budget_points:g}"
                                 + (f", p={v.p_value:.2g})" if v.p_value is not None else ")"))
            if row["agreement"] < cfg.min_agreement:
                v.reasons.append(f"top-1 agreement {row['agreement']:.2%} is below {cfg.min_agreement:.2%}")
        if cfg.check_sha256 and sha.get(row["name"]):
            path = run / row["path"]
            if path.is_file() and files.sha256_file(path) != sha[row["name"]]:
                v.reasons.append("file changed since export (sha256 differs from manifest.json)")
        v.passed = not v.reasons
        verdicts.append(v)
    return Verdict(run.name, ref_acc, cfg, verdicts)
