"""Match strength: a ranker's final score mapped to the probability that a hit is graded 2 or more (a real match),
fitted by isotonic regression on graded pairs, and read as strong / possible / weak.

A score on its own says little: the fusion's z-score sum is relative to each query's own candidates, so the best hit
of a query that nothing answers still scores high. The learned re-ranker's features include absolute signals (the
dense cosine, BM25's raw scores), and the calibration turns its output into a number a user can read: "about one in
three hits at this strength was graded a real match by people".

A calibration belongs to one ranker version (its scores' scale): it records that version, and a process serving
another ranker does not use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

Strength = Literal["strong", "possible", "weak"]

RESOURCES = Path(__file__).resolve().parent / "resources"
SHIPPED_FUSION = RESOURCES / "calibration-fusion.json"


@dataclass(frozen=True)
class Calibration:
    """A non-decreasing map score → P(grade >= 2): isotonic regression's breakpoints, linearly interpolated between
    them and clipped at the ends (plain numbers, shipped as JSON)."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    ranker: str | None = None  # the ranker version whose scores these are; None inside a re-ranker's own file
    fitted_on: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def probability(self, scores: np.ndarray | Sequence[float]) -> np.ndarray:
        values = np.asarray(scores, dtype=np.float64)
        return np.asarray(np.interp(values, self.x, self.y), dtype=np.float64)

    def as_dict(self) -> dict[str, Any]:
        return {"ranker": self.ranker, "x": list(self.x), "y": list(self.y), "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        x = tuple(float(v) for v in data["x"])
        y = tuple(float(v) for v in data["y"])
        if not x or len(x) != len(y) or any(b < a for a, b in zip(x, x[1:], strict=False)):
            raise ValueError("a calibration needs as many y as x, x increasing")
        if any(not 0.0 <= v <= 1.0 for v in y) or any(b < a for a, b in zip(y, y[1:], strict=False)):
            raise ValueError("a calibration's probabilities must lie in [0, 1] and never decrease")
        return cls(x=x, y=y, ranker=data.get("ranker"), fitted_on=dict(data.get("fitted_on", {})))

    @classmethod
    def load(cls, path: Path) -> Calibration:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        """Write atomically (a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.as_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def fit(
    scores: np.ndarray, grades: np.ndarray, *, relevant_from: int = 2, fitted_on: Mapping[str, Any] | None = None
) -> Calibration:
    """Isotonic regression (scikit-learn) of "graded relevant_from or more" on the score, kept as its breakpoints."""
    from sklearn.isotonic import IsotonicRegression

    x = np.asarray(scores, dtype=np.float64)
    labels = (np.asarray(grades) >= relevant_from).astype(np.float64)
    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(x, labels)
    xs, ys = np.asarray(model.X_thresholds_), np.asarray(model.y_thresholds_)
    return Calibration(
        x=tuple(round(float(v), 8) for v in xs),
        y=tuple(round(float(v), 6) for v in ys),
        fitted_on={"pairs": int(len(x)), "relevant": int(labels.sum()), **dict(fitted_on or {})},
    )


@dataclass(frozen=True)
class Thresholds:
    """Where "strong" and "possible" begin, as probabilities of a real match (settings: TECHMATCH_STRENGTH_*)."""

    strong: float = 0.35
    possible: float = 0.15

    def __post_init__(self) -> None:
        if not 0.0 <= self.possible <= self.strong <= 1.0:
            raise ValueError("strength thresholds need 0 <= possible <= strong <= 1")

    def label(self, probability: float) -> Strength:
        if probability >= self.strong:
            return "strong"
        if probability >= self.possible:
            return "possible"
        return "weak"


def reliability(probabilities: np.ndarray, grades: np.ndarray, *, relevant_from: int = 2, bins: int = 10) -> dict:
    """Brier score and a reliability table (equal-width probability bins: mean predicted vs observed rate)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = (np.asarray(grades) >= relevant_from).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        table.append(
            {
                "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                "hits": int(inside.sum()),
                "predicted": round(float(p[inside].mean()), 3),
                "observed": round(float(y[inside].mean()), 3),
            }
        )
    return {"brier": round(float(np.mean((p - y) ** 2)), 4), "base_rate": round(float(y.mean()), 4), "table": table}


@dataclass(frozen=True)
class MatchStrength:
    """What a process serves with every hit: the calibrated probability and its label."""

    calibration: Calibration
    thresholds: Thresholds = field(default_factory=Thresholds)

    def of(self, scores: Sequence[float]) -> list[tuple[float, Strength]]:
        probabilities = self.calibration.probability(np.asarray(scores, dtype=np.float64))
        return [(round(float(p), 4), self.thresholds.label(float(p))) for p in probabilities]


def for_ranker(
    version: str, *, reranker: Any | None, path: Path | None, thresholds: Thresholds
) -> MatchStrength | None:
    """The calibration that fits the served ranker: the re-ranker's own, else the file named in settings (refused
    when fitted for another ranker version), else the shipped fusion calibration when it was fitted for exactly this
    version; None when none fits (hits then carry no strength)."""
    if reranker is not None and getattr(reranker, "calibration", None) is not None and path is None:
        return MatchStrength(reranker.calibration, thresholds)
    if path is not None:
        calibration = Calibration.load(path)
        if calibration.ranker not in (None, version):
            raise ValueError(
                f"the calibration {path} was fitted for ranker {calibration.ranker!r}, but this process serves "
                f"{version!r}: fit it again (techmatch rank train) or unset TECHMATCH_CALIBRATION_MODEL"
            )
        return MatchStrength(calibration, thresholds)
    if SHIPPED_FUSION.exists():
        shipped = Calibration.load(SHIPPED_FUSION)
        if shipped.ranker == version:
            return MatchStrength(shipped, thresholds)
    return None
