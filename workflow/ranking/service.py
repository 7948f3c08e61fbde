"""Train the learned re-ranker from the graded pairs table (expert review, push responses, imported benchmarks)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.indexing import Indexes
from core.errors import InvalidInput
from matching.rerank import LinearRanker, embedder_name, features, fit_calibrated, grades_of
from models.tables import GradedPair, GradeSource, Need
from workflow.review.service import need_query_text

MIN_QUERIES = 3  # fewer needs with a relevant pair than this teach a model nothing
RELEVANT = 2  # the grade the model learns to recognise (as benchmark A: level 3 and up)


def training_groups(
    *, session: Session, indexes: Indexes, sources: Sequence[GradeSource]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per need with at least one pair graded >= 1: its live candidates' features and grades (the newest grade of a
    pair wins; a candidate nobody graded counts as 0, as in the benchmarks)."""
    rows = session.scalars(
        select(GradedPair).where(GradedPair.source.in_(list(sources))).order_by(GradedPair.at, GradedPair.id)
    ).all()
    grades: dict[int, dict[str, int]] = defaultdict(dict)
    for row in rows:
        grades[row.need_id][str(row.achievement_id)] = row.grade
    index = indexes.of("achievements")
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    wanted = [n for n, g in grades.items() if any(v > 0 for v in g.values())]
    for need in session.scalars(select(Need).where(Need.id.in_(wanted)).order_by(Need.id)).all():
        analysis = index.analyse(need_query_text(need))  # type: ignore[attr-defined]
        cands = index.candidates(analysis, k=50)  # type: ignore[attr-defined]
        if cands is None or not len(cands):
            continue
        keys = [str(index.doc_id(int(p))) for p in cands.positions]  # type: ignore[attr-defined]
        groups.append((features(cands), grades_of(keys, grades[need.id])))
    return groups


def train_from_grades(
    *, session: Session, indexes: Indexes, sources: Sequence[GradeSource], out: Path, ranker_version: str
) -> LinearRanker:
    """Fit the logistic re-ranker on the stored grades and save it (atomically) to out."""
    groups = training_groups(session=session, indexes=indexes, sources=sources)
    if len(groups) < MIN_QUERIES:
        raise InvalidInput(
            f"{len(groups)} needs have a pair graded 1 or more among their candidates; training needs {MIN_QUERIES}",
            field="source",
        )
    labels = np.concatenate([y for _, y in groups])
    if (labels >= RELEVANT).all() or not (labels >= RELEVANT).any():
        raise InvalidInput(
            f"no candidate is graded {RELEVANT} or more (or none below it): the grades give nothing to learn from",
            field="source",
        )
    model = fit_calibrated(
        groups,
        trained_on={
            "source": sorted(str(s) for s in sources),
            "queries": len(groups),
            "graded_relevant": int(sum(int((y > 0).sum()) for _, y in groups)),
            "candidates_from": ranker_version,
            "embedder": embedder_name(indexes.of("achievements").embedder),  # type: ignore[attr-defined]
        },
    )
    model.save(out)
    return model
