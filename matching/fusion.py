"""Fusion of ranked lists (BM25 words, BM25 character bigrams, dense): normalised weighted sum or RRF."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SIGNALS = ("words", "chars", "dense")


@dataclass(frozen=True)
class FusionConfig:
    """How the three lists are combined; weights need not sum to 1 (only their ratios matter)."""

    # Defaults tuned on benchmark A dev + benchmark B (eval.tune(), 396 configurations): z-score weighted sum with
    # words 0.4 / chars 0.3 / dense 0.3 sits on the A-vs-B Pareto front in a flat neighbourhood (A dev nDCG@10
    # 0.202, B 0.515). More dense weight helps A (real needs, semantic labels) and hurts B (keyword labels).
    method: Literal["weighted", "rrf"] = "weighted"
    weight_words: float = 0.4
    weight_chars: float = 0.3
    weight_dense: float = 0.3
    rrf_k: int = 60
    normalisation: Literal["minmax", "zscore"] = "zscore"

    def weight(self, signal: str) -> float:
        """The weight of one signal ("words", "chars" or "dense")."""
        return float(getattr(self, f"weight_{signal}"))

    @classmethod
    def only(cls, signal: str) -> FusionConfig:
        """The signal alone (z-scoring one list keeps its order): each single-signal baseline and review pool."""
        return cls(**{f"weight_{s}": 1.0 if s == signal else 0.0 for s in SIGNALS})  # type: ignore[arg-type]

    def uses(self, signal: str) -> bool:
        """Whether a signal contributes at all (a zero weight lets the index skip computing it)."""
        return self.weight(signal) > 0


@dataclass
class Candidates:
    """The union of the lists' top candidates, with every signal's exact raw score for every member.

    `ranks[s][j]` is the 1-based rank of member j in list s, 0 when it is not among that list's top candidates;
    `top[s]` holds the raw scores of list s's own top candidates (the sample its normalisation is fitted on).
    """

    positions: np.ndarray
    raw: dict[str, np.ndarray] = field(default_factory=dict)
    ranks: dict[str, np.ndarray] = field(default_factory=dict)
    top: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.positions)


def normalise(raw: np.ndarray, top: np.ndarray, how: str) -> np.ndarray:
    """Map raw scores onto a common scale fitted on the list's own top candidates.

    A per-query rescale is needed at all because BM25 scores grow with query length while e5 cosines sit in a narrow
    band (~0.75-0.90). z-score (default): (score - mean) / std of the list's top candidates. It does not let one
    outlying best score squash the rest (BM25 often has one: a short title that repeats the query's title), and a
    member that only another list brought in keeps its real distance below the pack instead of being clipped.
    min-max: best candidate → 1, the depth-th → 0, members below clipped to 0; bounded, but its scale is set by two
    single scores. On benchmark A dev + B the best z-score mix beat the best min-max mix (mean nDCG@10 0.361 vs
    0.358) and z-score configs make up most of the A-vs-B Pareto front.
    """
    if len(top) == 0:
        return np.zeros_like(raw, dtype=np.float64)
    lo, hi = float(top.min()), float(top.max())
    if hi - lo <= 1e-12:
        # One distinct score (often a single hit: a query term only one document has): every top candidate is
        # equally good, nothing else is. A z-score would divide by zero spread; one unit, as min-max gives it.
        return (raw >= hi).astype(np.float64) if hi > 0 else np.zeros_like(raw, dtype=np.float64)
    if how == "zscore":
        return (raw - float(top.mean())) / float(top.std())
    return np.clip((raw - lo) / (hi - lo), 0.0, None)


def fuse(cands: Candidates, config: FusionConfig) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fused score of every candidate, and each signal's part of it (same order as cands.positions)."""
    parts: dict[str, np.ndarray] = {}
    total = np.zeros(len(cands), dtype=np.float64)
    for signal in SIGNALS:
        weight = config.weight(signal)
        if weight <= 0 or signal not in cands.raw:
            continue
        if config.method == "rrf":
            ranks = cands.ranks[signal]
            part = np.where(ranks > 0, weight / (config.rrf_k + np.maximum(ranks, 1)), 0.0)
        else:
            part = weight * normalise(cands.raw[signal], cands.top[signal], config.normalisation)
        parts[signal] = part
        total += part
    return total, parts


def order(scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Indices that sort candidates best first; ties go to the lower position (deterministic)."""
    return np.lexsort((positions, -scores))
