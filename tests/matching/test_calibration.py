"""Match strength: isotonic calibration of a ranker's score, its labels, and where a process finds one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matching.calibration import Calibration, MatchStrength, Thresholds, fit, for_ranker, reliability
from matching.rerank import FEATURES, LinearRanker, fit_calibrated


def _scores_and_grades(n: int = 4000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true chance of a grade >= 2 is the score itself (a perfectly calibrated source)."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 1, n)
    grades = np.where(rng.uniform(0, 1, n) < scores, 2, 0)
    return scores, grades


def test_isotonic_fit_recovers_the_true_probability_and_never_decreases() -> None:
    scores, grades = _scores_and_grades()
    calibration = fit(scores, grades)
    probe = np.linspace(0, 1, 21)
    p = calibration.probability(probe)
    assert np.all(np.diff(p) >= 0)
    assert np.abs(p[2:-2] - probe[2:-2]).max() < 0.12
    # Outside the fitted range it clips, never extrapolates past [0, 1].
    assert calibration.probability([-5.0, 5.0]).tolist() == [calibration.y[0], calibration.y[-1]]


def test_reliability_table_and_brier_score() -> None:
    scores, grades = _scores_and_grades()
    good = reliability(scores, grades)
    # A calibrated source: each bin's observed rate is near its mean prediction.
    assert all(abs(row["predicted"] - row["observed"]) < 0.08 for row in good["table"])
    inverted = reliability(1 - scores, grades)
    assert good["brier"] < 0.2 < inverted["brier"]
    assert sum(row["hits"] for row in good["table"]) == len(scores)


def test_thresholds_label_each_probability() -> None:
    thresholds = Thresholds(strong=0.5, possible=0.2)
    assert [thresholds.label(p) for p in (0.9, 0.5, 0.3, 0.2, 0.1)] == [
        "strong",
        "strong",
        "possible",
        "possible",
        "weak",
    ]
    with pytest.raises(ValueError):
        Thresholds(strong=0.1, possible=0.4)


def test_a_calibration_file_is_checked_when_read() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Calibration.from_dict({"x": [1.0, 0.0], "y": [0.1, 0.2]})
    with pytest.raises(ValueError, match="never decrease"):
        Calibration.from_dict({"x": [0.0, 1.0], "y": [0.5, 0.2]})


def _groups(seed: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(30):
        x = rng.normal(size=(40, len(FEATURES)))
        grades = np.where(x[:, 0] + rng.normal(scale=0.5, size=40) > 1.0, 2, 0)
        groups.append((x, grades))
    return groups


def test_a_trained_re_ranker_carries_its_calibration_through_json(tmp_path: Path) -> None:
    model = fit_calibrated(_groups())
    assert model.calibration is not None
    path = tmp_path / "ranker.json"
    model.save(path)
    again = LinearRanker.load(path)
    assert again.calibration == model.calibration
    # The calibration maps scores without reordering them: not part of the ranker's version.
    assert again.version == model.version
    strength = for_ranker("learned-x", reranker=again, path=None, thresholds=Thresholds())
    assert strength is not None and strength.calibration == model.calibration


def test_a_calibration_for_another_ranker_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    Calibration(x=(0.0, 1.0), y=(0.0, 1.0), ranker="hybrid-aaaa").save(path)
    with pytest.raises(ValueError, match="hybrid-aaaa"):
        for_ranker("hybrid-bbbb", reranker=None, path=path, thresholds=Thresholds())
    fits = for_ranker("hybrid-aaaa", reranker=None, path=path, thresholds=Thresholds())
    assert isinstance(fits, MatchStrength)
    assert fits.of([0.9, 0.3, 0.05]) == [(0.9, "strong"), (0.3, "possible"), (0.05, "weak")]  # 0.35 / 0.15
    # No file and no shipped calibration for this version: no strength rather than a wrong one.
    assert for_ranker("hybrid-unknown", reranker=None, path=None, thresholds=Thresholds()) is None
