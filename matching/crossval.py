"""Honest figures: k-fold cross-validation over queries (grouped by need), so no query's grades ever choose the
configuration that scores it.

A default tuned on benchmark A-dev and then reported on A-dev is an in-sample figure. Here every tunable choice (the
fusion weights, and later a learned re-ranker) is made on k-1 folds of the queries and scored on the fold left out;
the figure is the mean over all queries of their held-out scores. Untuned baselines (each single signal) are scored on
every query as they are.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from matching.fusion import FusionConfig

if TYPE_CHECKING:
    from matching.eval import Prepared

FOLDS = 5
SEED = 20261203


def folds(query_ids: Sequence[str], *, k: int = FOLDS, seed: int = SEED) -> list[list[str]]:
    """The queries split into k folds of near-equal size, the same split for the same ids and seed."""
    ids = sorted(query_ids)
    random.Random(seed).shuffle(ids)
    return [sorted(ids[i::k]) for i in range(k)]


def per_query(prep: Prepared, config: FusionConfig, metric: str = "ndcg@10") -> dict[str, float]:
    """One fusion configuration's metric for every query of the benchmark (full corpus, as served)."""
    from ranx import Qrels, Run, evaluate

    from matching.eval import RUN_DEPTH, _run

    run = Run(_run(prep, prep.full, config, RUN_DEPTH), name="run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ranx/numba warn about empty runs and typed lists
        evaluate(Qrels(prep.bench.gains), run, metric, make_comparable=True)
    scores = run.scores[metric]
    return {qid: float(scores.get(qid, 0.0)) for qid in prep.bench.gains}


@dataclass(frozen=True)
class CrossValidated:
    """A tuned choice's held-out figure: the mean of every query's score under the choice made without it."""

    mean: float
    fold_means: list[float]
    chosen: list[FusionConfig]
    held_out: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ndcg@10": round(self.mean, 4),
            "fold_ndcg@10": [round(v, 4) for v in self.fold_means],
            "chosen": [_label(c) for c in self.chosen],
        }


def _label(config: FusionConfig) -> str:
    if config.method == "rrf":
        return f"rrf k={config.rrf_k} w={config.weight_words:g}/{config.weight_chars:g}/{config.weight_dense:g}"
    return f"{config.normalisation} w={config.weight_words:g}/{config.weight_chars:g}/{config.weight_dense:g}"


def cross_validate_choice(
    scores: Mapping[FusionConfig, Mapping[str, float]], *, k: int = FOLDS, seed: int = SEED
) -> CrossValidated:
    """Pick, for each fold, the configuration with the best mean on the other folds; score it on that fold."""
    configs = list(scores)
    query_ids = list(next(iter(scores.values())))
    matrix = np.array([[scores[c][q] for q in query_ids] for c in configs])
    column = {q: j for j, q in enumerate(query_ids)}
    held_out: dict[str, float] = {}
    fold_means, chosen = [], []
    for fold in folds(query_ids, k=k, seed=seed):
        test = [column[q] for q in fold]
        train = [j for q, j in column.items() if q not in set(fold)]
        # Ties go to the earlier configuration (the grid's order), so the choice is deterministic.
        best = int(np.argmax(matrix[:, train].mean(axis=1)))
        chosen.append(configs[best])
        fold_means.append(float(matrix[best, test].mean()))
        held_out.update({q: float(matrix[best, column[q]]) for q in fold})
    return CrossValidated(
        mean=float(np.mean(list(held_out.values()))), fold_means=fold_means, chosen=chosen, held_out=held_out
    )


def cross_validated_report(
    prep: Prepared,
    *,
    default: FusionConfig,
    grid: Sequence[FusionConfig],
    k: int = FOLDS,
    seed: int = SEED,
    rerankers: Sequence[str] = ("logistic", "lambdarank"),
    shipped: Any | None = None,
    served: str | None = None,
    thresholds: Any | None = None,
) -> dict[str, Any]:
    """Every baseline and the fold-tuned fusion on one benchmark, side by side, nDCG@10 over all queries.

    - each single signal (nothing tuned: scored as is);
    - the served default fusion: its weights were chosen on A-dev and B themselves, so on those sets this figure is
      in-sample, printed to show how much that flatters it;
    - the fusion tuned inside the folds: the honest figure of "a tuned hybrid";
    - each learned re-ranker over the served fusion's candidates, trained inside the folds;
    - the shipped re-ranker (trained on all of A-dev): in-sample on A-dev, a clean guard on B;
    - match strength (calibration) of the fusion and of the logistic re-ranker, measured on held-out folds.

    `served` names the row of the ranker this process serves (marked in the output).
    """
    from matching.eval import mode_config

    singles = {"bm25-words": FusionConfig.only("words"), "bm25-chars": FusionConfig.only("chars")}
    singles["dense"] = mode_config("dense", default)
    out: dict[str, Any] = {"folds": k, "seed": seed, "queries": len(prep.bench.gains), "rankers": {}}
    for name, config in singles.items():
        values = per_query(prep, config)
        out["rankers"][name] = {"ndcg@10": round(float(np.mean(list(values.values()))), 4), "tuned": "nothing"}
    default_scores = per_query(prep, default)
    out["rankers"]["hybrid-default (in-sample)"] = {
        "ndcg@10": round(float(np.mean(list(default_scores.values()))), 4),
        "tuned": "on this set itself",
    }
    scores = {config: per_query(prep, config) for config in grid}
    tuned = cross_validate_choice(scores, k=k, seed=seed)
    out["rankers"]["hybrid-fusion-cv"] = tuned.as_dict() | {"tuned": f"in {k} folds"}
    for kind in rerankers:
        out["rankers"][f"rerank-{kind}-cv"] = cross_validate_reranker(prep, kind=kind, k=k, seed=seed)
    if shipped is not None:
        seen = "in-sample: trained on these queries" if prep.bench.name == "A-dev" else "unseen: trained on A-dev"
        out["rankers"]["rerank-logistic-shipped"] = {"ndcg@10": round(_score_ranker(prep, shipped), 4), "tuned": seen}
    if served is not None and served in out["rankers"]:
        out["rankers"][served]["served"] = True
    out["strength"] = {
        name: cross_validate_calibration(prep, ranker=ranker, fusion=default, thresholds=thresholds, k=k, seed=seed)
        for name, ranker in (("fusion", "fusion"), ("rerank-logistic", "logistic"))
    }
    if shipped is not None and shipped.calibration is not None:
        out["strength"]["rerank-logistic-shipped"] = shipped_strength(prep, shipped, thresholds=thresholds) | {
            "calibrated": "in-sample: on these queries" if prep.bench.name == "A-dev" else "unseen: on A-dev"
        }
    return out


def _score_ranker(prep: Prepared, ranker: Any) -> float:
    """Mean nDCG@10 of a trained re-ranker over every query of the benchmark."""
    from ranx import Qrels, Run, evaluate

    run = _ranked(_labelled(prep), list(prep.bench.gains), ranker.probability)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(evaluate(Qrels(prep.bench.gains), Run(run), "ndcg@10", make_comparable=True))  # type: ignore[arg-type]


def _labelled(prep: Prepared) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Per query: its candidates' features, grades (0 when unjudged) and doc keys."""
    from matching.rerank import features, grades_of

    out: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    for qid in prep.bench.gains:
        cands = prep.full.get(qid)
        if cands is None or not len(cands):
            continue
        keys = [prep.bench.doc_keys[prep.index.doc_id(int(p))] for p in cands.positions]
        out[qid] = (features(cands), grades_of(keys, prep.bench.gains[qid]), keys)
    return out


def _ranked(
    data: Mapping[str, tuple[np.ndarray, np.ndarray, list[str]]], query_ids: Sequence[str], score: Any
) -> dict[str, dict[str, float]]:
    """A ranx run: each query's candidates ordered by a model's score (ties: the lower position), top RUN_DEPTH."""
    from matching.eval import RUN_DEPTH

    run: dict[str, dict[str, float]] = {}
    for qid in query_ids:
        if qid not in data:
            run[qid] = {}
            continue
        x, _, keys = data[qid]
        best = np.lexsort((np.arange(len(keys)), -score(x)))[:RUN_DEPTH]
        run[qid] = {keys[j]: float(len(best) - r) for r, j in enumerate(best)}
    return run


def cross_validate_reranker(prep: Prepared, *, kind: str, k: int = FOLDS, seed: int = SEED) -> dict[str, Any]:
    """A re-ranker trained on k-1 folds of the queries, scored on the fold left out: held-out nDCG@10."""
    from ranx import Qrels, Run, evaluate

    from matching.rerank import train

    data = _labelled(prep)
    held_out: dict[str, dict[str, float]] = {}
    fold_means: list[float] = []
    for fold in folds(list(prep.bench.gains), k=k, seed=seed):
        chosen = set(fold)
        ranker = train([(x, y) for q, (x, y, _) in data.items() if q not in chosen], kind=kind, seed=seed)  # type: ignore[arg-type]
        scored = Run(_ranked(data, fold, ranker.score), name=kind)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluate(Qrels({q: prep.bench.gains[q] for q in fold}), scored, "ndcg@10", make_comparable=True)
        values = {q: float(scored.scores["ndcg@10"].get(q, 0.0)) for q in fold}
        fold_means.append(float(np.mean(list(values.values()))))
        held_out.update({q: {"ndcg@10": v} for q, v in values.items()})
    mean = float(np.mean([v["ndcg@10"] for v in held_out.values()]))
    return {
        "ndcg@10": round(mean, 4),
        "fold_ndcg@10": [round(v, 4) for v in fold_means],
        "tuned": f"trained in {k} folds",
    }


def _top(score: np.ndarray, depth: int) -> np.ndarray:
    """Indices of the best `depth` candidates (ties: the lower position), as the served order."""
    return np.lexsort((np.arange(len(score)), -score))[:depth]


def _strength_report(shown: Sequence[tuple[np.ndarray, np.ndarray]], thresholds: Any, *, depth: int) -> dict[str, Any]:
    """Brier, reliability, observed rate per label and the weak-only tally over (probabilities, grades) of the top
    `depth` hits of each query."""
    from matching.calibration import reliability

    p_all = np.concatenate([p for p, _ in shown])
    y_all = np.concatenate([y for _, y in shown])
    labels = np.array([thresholds.label(float(v)) for v in p_all])
    by_label = {
        name: {"hits": int((labels == name).sum()), "observed": round(float((y_all[labels == name] >= 2).mean()), 3)}
        for name in ("strong", "possible", "weak")
        if (labels == name).any()
    }
    best = [(float(p[0]), bool((y >= 2).any())) for p, y in shown if len(p)]
    weak_only = [answered for p, answered in best if thresholds.label(p) == "weak"]
    return {
        "shown": f"top {depth} of each query",
        **reliability(p_all, y_all),
        "by_strength": by_label,
        "weak_only": {
            "queries": len(weak_only),
            "of": len(best),
            "with_a_real_match_shown": int(sum(weak_only)),
            "queries_with_no_real_match_shown": int(sum(1 for _, answered in best if not answered)),
        },
        "thresholds": {"strong": thresholds.strong, "possible": thresholds.possible},
    }


def shipped_strength(prep: Prepared, ranker: Any, *, thresholds: Any | None = None, depth: int = 10) -> dict[str, Any]:
    """A trained re-ranker's own calibration applied to every query of a benchmark as served (top `depth`)."""
    from matching.calibration import Thresholds

    data = _labelled(prep)
    shown = []
    for x, y, _ in data.values():
        score = ranker.probability(x)
        top = _top(score, depth)
        shown.append((ranker.calibration.probability(score[top]), y[top]))
    return {"ranker": "logistic (shipped)", **_strength_report(shown, thresholds or Thresholds(), depth=depth)}


def cross_validate_calibration(
    prep: Prepared,
    *,
    ranker: str,
    fusion: FusionConfig | None = None,
    thresholds: Any | None = None,
    k: int = FOLDS,
    seed: int = SEED,
    depth: int = 10,
) -> dict[str, Any]:
    """Match strength measured on held-out queries: the ranker's served top `depth` hits of each fold, their
    probability from a calibration fitted on the other folds only (and, for the learned ranker, scores from a model
    that never saw those queries: nested, the calibration's own training scores come from inner folds).

    Reports the Brier score and a reliability table over the shown hits, the observed rate of real matches per
    strength label, and how well "weak only" (the best hit is weak) singles out queries with no real match shown.
    """
    from matching.calibration import Thresholds, fit
    from matching.fusion import fuse
    from matching.rerank import fit_calibrated

    thresholds = thresholds or Thresholds()
    data = _labelled(prep)
    query_ids = [q for q in prep.bench.gains if q in data]
    config = fusion or FusionConfig()
    fused = {q: fuse(prep.full[q], config)[0] for q in query_ids} if ranker == "fusion" else {}  # type: ignore[arg-type]

    shown: list[tuple[np.ndarray, np.ndarray]] = []
    for fold in folds(query_ids, k=k, seed=seed):
        train_ids = [q for q in query_ids if q not in set(fold)]
        if ranker == "fusion":
            calibration = fit(
                np.concatenate([fused[q] for q in train_ids]), np.concatenate([data[q][1] for q in train_ids])
            )
            scores = {q: fused[q] for q in fold}
        else:
            # The shipped procedure itself: the model on the training folds, its calibration on their inner folds.
            model = fit_calibrated([data[q][:2] for q in train_ids], seed=seed, folds=k - 1)  # type: ignore[misc]
            assert model.calibration is not None
            calibration = model.calibration
            scores = {q: model.probability(data[q][0]) for q in fold}
        for q, score in scores.items():
            top = _top(score, depth)
            shown.append((calibration.probability(score[top]), data[q][1][top]))
    report = _strength_report(shown, thresholds, depth=depth)
    return {"ranker": ranker, **report, "shown": f"top {depth} of each held-out query"}
