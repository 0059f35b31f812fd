import numpy as np
import pytest

from edgeport.runtime.stats import delta_stats, mcnemar_exact, resolvable_points


def test_mcnemar_exact_known_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)  # 2 * 0.5**5
    assert mcnemar_exact(1, 9) == pytest.approx(0.021484375)  # 2 * 11 / 1024
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)


def test_resolvable_points():
    assert resolvable_points(10_000) == pytest.approx(0.06)  # 6 one-way discordant images
    assert resolvable_points(2_000) == pytest.approx(0.3)


def test_delta_stats_seeded_and_sized():
    rng = np.random.default_rng(1)
    a = rng.random(2000) < 0.99
    b = a.copy()
    b[np.flatnonzero(a)[:20]] = False  # b loses 20 images: -1.0 point
    s = delta_stats(a, b, seed=0)
    assert s.delta_points == pytest.approx(-1.0)
    assert s.only_a == 20 and s.only_b == 0
    assert s.ci_low < -1.0 < s.ci_high <= -0.5
    assert s.significant
    assert delta_stats(a, b, seed=0) == s
    same = delta_stats(a, a)
    assert same.p_value == 1.0 and same.ci_low == same.ci_high == 0.0 and not same.significant


def test_delta_stats_rejects_mismatched():
    with pytest.raises(ValueError):
        delta_stats(np.ones(3, bool), np.ones(4, bool))


def test_report_states_change_ci_and_resolution():
    from edgeport.runtime.report import to_markdown

    report = {"run": "r", "dataset": {"test_images": 10000, "source": "mnist"},
              "reference": {"accuracy": 0.99, "resolvable_points": 0.06},
              "artifacts": [{"name": "prune_tflite_int8", "status": "ok", "accuracy": 0.987, "agreement": 0.999,
                             "lineage": {"source_predictions": "compressed/prune.probs.npz"},
                             "delta": {"delta_points": -0.3, "ci_low": -0.45, "ci_high": -0.15, "p_value": 2e-5,
                                       "only_a": 40, "only_b": 10, "significant": True}}]}
    md = to_markdown(report)
    assert "| prune_tflite_int8 | variant | -0.30 | [-0.45, -0.15] | 40 | 10 | 2e-05 | yes |" in md
    assert "smaller than 0.06 points" in md
