"""A learned re-ranker over the hybrid's candidates: features of each (query, candidate) from the three signals, and
the models that order them (logistic regression as the floor, LightGBM lambdarank), trained on graded pairs.

The features are what the fusion already computes for every candidate, so re-ranking costs one model call over a
few hundred rows: per signal (BM25 over jieba words, BM25 over character bigrams, dense), the raw score, its z-score
within that list's top candidates, the reciprocal rank in that list (0 when the list did not retrieve it), and whether
it did.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from matching.calibration import Calibration
from matching.fusion import SIGNALS, Candidates, normalise

FEATURES = [f"{signal}_{kind}" for signal in SIGNALS for kind in ("raw", "z", "inv_rank", "retrieved")]
SEED = 20261203


def features(cands: Candidates) -> np.ndarray:
    """One row of FEATURES per candidate (in cands.positions order).

    The served fusion's score is deliberately not a feature: its weights were tuned on benchmark A-dev itself, so
    feeding it in would let those queries' grades reach the held-out folds.
    """
    n = len(cands)
    columns: list[np.ndarray] = []
    for signal in SIGNALS:
        raw = cands.raw.get(signal)
        if raw is None:
            columns += [np.zeros(n)] * 4
            continue
        ranks = cands.ranks.get(signal, np.zeros(n, dtype=np.int64))
        columns.append(raw.astype(np.float64))
        columns.append(normalise(raw, cands.top.get(signal, np.zeros(0)), "zscore"))
        columns.append(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0))
        columns.append((ranks > 0).astype(np.float64))
    return np.column_stack(columns)


@dataclass
class Ranker:
    """A trained model: scores candidates from their features (higher is better)."""

    kind: Literal["logistic", "lambdarank"]
    model: Any
    features: list[str] = field(default_factory=lambda: list(FEATURES))

    def score(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "logistic":
            return np.asarray(self.model.decision_function(x), dtype=np.float64)
        return np.asarray(self.model.predict(x), dtype=np.float64)


def train(
    groups: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    kind: Literal["logistic", "lambdarank"],
    relevant_from: int = 2,
    seed: int = SEED,
) -> Ranker:
    """Fit a model on (features, grades) per query. Logistic regression learns P(grade >= relevant_from) pointwise;
    LambdaRank orders each query's candidates by grade directly (small: few trees, few leaves, strong regularisation,
    since a fold holds ~80 judged needs)."""
    x = np.vstack([g[0] for g in groups])
    y = np.concatenate([g[1] for g in groups]).astype(np.int64)
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
        model.fit(x, (y >= relevant_from).astype(np.int64))
        return Ranker(kind, model)
    import lightgbm as lgb

    model = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=300,
        learning_rate=0.03,
        num_leaves=7,
        min_child_samples=20,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        reg_lambda=1.0,
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        n_jobs=1,
        verbose=-1,
    )
    model.fit(x, np.clip(y, 0, 3), group=[len(g[1]) for g in groups], eval_at=[10])
    return Ranker(kind, model)


def grades_of(keys: Sequence[str], judged: Mapping[str, int]) -> np.ndarray:
    """Each candidate's grade (0 when unjudged)."""
    return np.array([max(0, int(judged.get(key, 0))) for key in keys], dtype=np.int64)


@dataclass(frozen=True)
class LinearRanker:
    """A trained logistic re-ranker as plain numbers (standardisation, weights, intercept): small, readable, shipped
    as JSON, no pickle. `probability` is P(grade >= relevant_from) for each candidate."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    relevant_from: int = 2
    trained_on: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # Its served probability mapped onto grades seen by people (fitted on out-of-fold scores): match strength.
    calibration: Calibration | None = field(default=None, compare=False, hash=False)

    def logit(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return np.asarray(z @ np.asarray(self.coef) + self.intercept, dtype=np.float64)

    def probability(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-self.logit(x))), dtype=np.float64)

    @property
    def version(self) -> str:
        """A short hash of the numbers that order the candidates (what the ranker version carries; the calibration
        maps scores without reordering them, so it is not part of it)."""
        blob = json.dumps([self.features, self.mean, self.scale, self.coef, self.intercept, self.relevant_from])
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "kind": "logistic",
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "relevant_from": self.relevant_from,
            "trained_on": self.trained_on,
            "version": self.version,
        }
        if self.calibration is not None:
            body["calibration"] = self.calibration.as_dict()
        return json.dumps(body, ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LinearRanker:
        data = json.loads(text)
        if data.get("kind") != "logistic" or tuple(data.get("features", ())) != tuple(FEATURES):
            raise ValueError("not a logistic re-ranker over this version's features")
        return cls(
            features=tuple(data["features"]),
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            coef=tuple(float(v) for v in data["coef"]),
            intercept=float(data["intercept"]),
            relevant_from=int(data.get("relevant_from", 2)),
            trained_on=dict(data.get("trained_on", {})),
            calibration=Calibration.from_dict(data["calibration"]) if data.get("calibration") else None,
        )

    @classmethod
    def load(cls, path: Path) -> LinearRanker:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def save(self, path: Path) -> None:
        """Write atomically (a reader never sees half a model)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)


def fit_linear(
    groups: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    relevant_from: int = 2,
    seed: int = SEED,
    trained_on: Mapping[str, Any] | None = None,
) -> LinearRanker:
    """Train the logistic re-ranker and keep it as plain numbers."""
    ranker = train(groups, kind="logistic", relevant_from=relevant_from, seed=seed)
    scaler, model = ranker.model[0], ranker.model[-1]
    return LinearRanker(
        features=tuple(FEATURES),
        mean=tuple(round(float(v), 8) for v in scaler.mean_),
        scale=tuple(round(float(v), 8) if v > 0 else 1.0 for v in scaler.scale_),
        coef=tuple(round(float(v), 8) for v in model.coef_[0]),
        intercept=round(float(model.intercept_[0]), 8),
        relevant_from=relevant_from,
        trained_on=dict(trained_on or {}),
    )


def fit_calibrated(
    groups: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    relevant_from: int = 2,
    seed: int = SEED,
    trained_on: Mapping[str, Any] | None = None,
    folds: int = 5,
) -> LinearRanker:
    """The logistic re-ranker on every group, with its match-strength calibration fitted on out-of-fold scores (each
    group's candidates scored by a model trained without it), so the calibration sees scores as unseen queries get
    them, not the flattering in-sample ones."""
    from matching import calibration
    from matching.crossval import folds as split

    model = fit_linear(groups, relevant_from=relevant_from, seed=seed, trained_on=trained_on)
    ids = [str(i) for i in range(len(groups))]
    scores: list[np.ndarray] = []
    grades: list[np.ndarray] = []
    for fold in split(ids, k=min(folds, len(groups)), seed=seed):
        held = {int(i) for i in fold}
        inner = fit_linear([g for i, g in enumerate(groups) if i not in held], relevant_from=relevant_from, seed=seed)
        for i in sorted(held):
            scores.append(inner.probability(groups[i][0]))
            grades.append(groups[i][1])
    fitted = calibration.fit(
        np.concatenate(scores),
        np.concatenate(grades),
        relevant_from=relevant_from,
        fitted_on={"scores": f"out of {min(folds, len(groups))} folds"},
    )
    return replace(model, calibration=fitted)


SHIPPED = Path(__file__).resolve().parent / "resources" / "ranker-logistic.json"


def train_on_benchmark_a(
    data_dir: Path,
    *,
    embedder: Any,
    tuning: Mapping[str, Any],
    out: Path = SHIPPED,
    fusion_version: str | None = None,
    fusion_out: Path | None = None,
) -> Path:
    """Fit the logistic re-ranker, with its calibration, on every A-dev query's candidates (the shipped model) and
    save it; with fusion_version, also calibrate the fusion that version names (the shipped fusion calibration)."""
    from matching import calibration
    from matching.crossval import _labelled
    from matching.eval import load_benchmark_a, prepare
    from matching.fusion import FusionConfig, fuse

    bench = load_benchmark_a(data_dir)
    prep = prepare(bench, embedder=embedder, tuning=tuning)
    data = _labelled(prep)
    pairs = sum(int((y > 0).sum()) for _, y, _ in data.values())
    source = "benchmark A-dev (qrels_dev.tsv)"
    model = fit_calibrated(
        [(x, y) for x, y, _ in data.values()],
        trained_on={
            "source": source,
            "queries": len(data),
            "graded_relevant": pairs,
            "embedder": embedder_name(embedder),
        },
    )
    model.save(out)
    if fusion_version is not None:
        config = tuning.get("fusion") or FusionConfig()
        scores = np.concatenate([fuse(prep.full[q], config)[0] for q in data])  # type: ignore[arg-type]
        grades = np.concatenate([y for _, y, _ in data.values()])
        fitted = calibration.fit(scores, grades, fitted_on={"source": source, "queries": len(data)})
        replace(fitted, ranker=fusion_version).save(fusion_out or calibration.SHIPPED_FUSION)
    return out


def rescore(cands: Candidates, ranker: LinearRanker) -> np.ndarray:
    """The re-ranker's probability for every candidate (the served score when the learned ranker is on)."""
    return ranker.probability(features(cands))


def embedder_name(embedder: Any) -> str | None:
    """The encoder's name (its dense features depend on it), through a caching wrapper."""
    inner = getattr(embedder, "inner", embedder)
    return getattr(inner, "name", None)


def check_embedder(ranker: LinearRanker, embedder: Any) -> None:
    """Refuse a re-ranker whose dense features came from another encoder (their scale differs: it would silently
    over- or under-weigh them)."""
    trained = ranker.trained_on.get("embedder")
    serving = embedder_name(embedder)
    if trained and serving and trained != serving:
        raise ValueError(
            f"the re-ranker was trained with the encoder {trained!r}, but this process encodes with {serving!r}: "
            "train it again (techmatch rank train) or set TECHMATCH_RANKER=fusion"
        )
