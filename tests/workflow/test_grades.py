"""Benchmark A-dev's qrels imported into the graded-pairs table: every pair once, grade = level − 1, idempotent."""

from __future__ import annotations

import csv

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.tables import Achievement, GradedPair, GradeSource, Need
from tests.conftest import SHARED_DATA, requires_shared_data
from workflow.ranking.grades import A_FOLDER, BATCH, SOURCE, import_benchmark_a

pytestmark = requires_shared_data


def test_benchmark_a_dev_grades_land_once_with_their_rows(session_factory: sessionmaker[Session]) -> None:
    folder = SHARED_DATA / A_FOLDER
    with (folder / "achievement_title_tokens.tsv").open(encoding="utf-8") as handle:
        titled = {r["aid"] for r in csv.DictReader(handle, delimiter="\t") if r["title_tokens"] not in ("", "N")}
    with (folder / "qrels_dev.tsv").open(encoding="utf-8") as handle:
        qrels = {(r["rid"], r["aid"]): int(r["level"]) - 1 for r in csv.DictReader(handle, delimiter="\t")}
    expected = {pair: grade for pair, grade in qrels.items() if pair[1] in titled}

    first = import_benchmark_a(session_factory=session_factory, data_dir=SHARED_DATA)
    assert first.added == len(expected)
    assert first.achievements.rejected == 0 and first.needs.rejected == 0
    assert sum(first.skipped.values()) == len(qrels) - len(expected)

    with session_factory() as session:
        rows = session.execute(
            select(Need.external_id, Achievement.external_id, GradedPair.grade)
            .join(Need, Need.id == GradedPair.need_id)
            .join(Achievement, Achievement.id == GradedPair.achievement_id)
            .where(GradedPair.source == GradeSource.benchmark, GradedPair.batch == BATCH)
        ).all()
        assert {(rid, aid): grade for rid, aid, grade in rows} == expected
        assert all(0 <= grade <= 3 for _, _, grade in rows)
        needs = session.scalar(select(func.count()).select_from(Need).where(Need.source == SOURCE))
        assert needs == len({rid for rid, _ in qrels})

    again = import_benchmark_a(session_factory=session_factory, data_dir=SHARED_DATA)
    assert again.added == 0 and again.existing == len(expected)
    assert again.achievements.inserted == 0 and again.needs.inserted == 0
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(GradedPair)) == len(expected)
