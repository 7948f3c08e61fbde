"""Graded pairs from outside the platform: benchmark A's dev qrels loaded into the one graded-pairs table, with the
needs and achievements they grade, so `techmatch rank train --source benchmark` learns from them as it does from
expert reviews and push responses.

Benchmark A's achievements are short POS-filtered titles (its only text); its needs are real enterprise needs. Rows
are ingested through the normal ingest path (source "ccf-bdci2019", change feed, index), and the import is
idempotent: a second run writes nothing new.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ingest.service import IngestSummary, ingest_rows
from models.db import session_scope
from models.tables import Achievement, GradedPair, GradeSource, IngestKind, Need

A_FOLDER = "ccf-bdci2019-tech-match"
SOURCE = "ccf-bdci2019"
BATCH = "ccf-bdci2019-dev"


@dataclass
class GradesImport:
    """What an import wrote: the ingest runs' summaries, pairs added, pairs already there, pairs skipped and why."""

    achievements: IngestSummary
    needs: IngestSummary
    added: int = 0
    existing: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def _achievement_rows(folder: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with (folder / "achievement_title_tokens.tsv").open(encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle, delimiter="\t"), start=2):
            tokens = row["title_tokens"]
            if tokens and tokens != "N":  # "N": the benchmark lost this title; nothing to match on
                yield number, {"external_id": row["aid"], "title": tokens.replace(" ", ""), "source": SOURCE}


def _need_rows(folder: Path, wanted: set[str]) -> Iterator[tuple[int, dict[str, str]]]:
    with (folder / "requirements.jsonl").open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            need = json.loads(line)
            if need["rid"] in wanted:
                body = {"title": need["title"], "description": need.get("content") or "", "source": SOURCE}
                yield number, {"external_id": need["rid"], **body}


def import_benchmark_a(*, session_factory: sessionmaker[Session], data_dir: Path) -> GradesImport:
    """Benchmark A's dev qrels (qrels_dev.tsv, the dev half only) as graded pairs: grade = level − 1."""
    folder = data_dir / A_FOLDER
    with (folder / "qrels_dev.tsv").open(encoding="utf-8") as handle:
        qrels = [(r["rid"], r["aid"], int(r["level"]) - 1) for r in csv.DictReader(handle, delimiter="\t")]
    achievements = ingest_rows(
        session_factory=session_factory,
        kind=IngestKind.achievements,
        rows=_achievement_rows(folder),
        source=SOURCE,
        location=str(folder / "achievement_title_tokens.tsv"),
        batch_size=1000,
    )
    needs = ingest_rows(
        session_factory=session_factory,
        kind=IngestKind.needs,
        rows=_need_rows(folder, {rid for rid, _, _ in qrels}),
        source=SOURCE,
        location=str(folder / "requirements.jsonl"),
    )
    out = GradesImport(achievements=achievements, needs=needs)
    with session_scope(session_factory) as session:
        need_ids = dict(session.execute(select(Need.external_id, Need.id).where(Need.source == SOURCE)).tuples().all())
        achievement_ids = dict(
            session.execute(select(Achievement.external_id, Achievement.id).where(Achievement.source == SOURCE))
            .tuples()
            .all()
        )
        stored = set(
            session.execute(
                select(GradedPair.need_id, GradedPair.achievement_id).where(
                    GradedPair.source == GradeSource.benchmark, GradedPair.batch == BATCH
                )
            )
            .tuples()
            .all()
        )
        for rid, aid, grade in qrels:
            if rid not in need_ids or aid not in achievement_ids:
                reason = "need not imported" if rid not in need_ids else "achievement has no title"
                out.skipped[reason] = out.skipped.get(reason, 0) + 1
                continue
            pair = (need_ids[rid], achievement_ids[aid])
            if pair in stored:
                out.existing += 1
                continue
            stored.add(pair)
            session.add(
                GradedPair(
                    need_id=pair[0],
                    achievement_id=pair[1],
                    grade=max(0, grade),
                    source=GradeSource.benchmark,
                    batch=BATCH,
                )
            )
            out.added += 1
    return out
