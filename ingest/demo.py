"""Demo data: real needs and achievements from ../shared/data when present, else the sample shipped in the repo."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from ingest.service import format_summary, ingest_rows
from models.tables import IngestKind

SAMPLE_DIR = Path(__file__).resolve().parent / "demo_data"


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _keywords(value: Any) -> list[str]:
    # The CSL files store keyword lists as Python-literal strings: "['a', 'b']".
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str) and value.startswith("["):
        try:
            return [str(v) for v in ast.literal_eval(value)]
        except (ValueError, SyntaxError):
            return []
    return []


def _title_from(abstract: str) -> str:
    # FewCLUE abstracts carry no title; the first sentence, cut short, stands in for one.
    first = abstract.replace(".", "。").split("。", 1)[0]
    return first[:60] or abstract[:60]


def shared_needs(data_dir: Path) -> Iterator[dict[str, Any]]:
    """CCF BDCI 2019 enterprise needs."""
    for rec in _jsonl(data_dir / "ccf-bdci2019-tech-match" / "requirements.jsonl"):
        yield {
            "external_id": rec["rid"],
            "title": rec["title"],
            "description": rec.get("content", ""),
            "source": "ccf-bdci2019",
        }


def _csl(data_dir: Path) -> Iterator[dict[str, Any]]:
    for rec in _jsonl(data_dir / "csl-benchmark-2k" / "csl_2k.jsonl"):
        yield {
            "external_id": rec["id"],
            "title": rec["title"],
            "abstract": rec["abstract"],
            "keywords": _keywords(rec.get("keywords")),
            "field": rec.get("discipline"),
            "source": "csl",
        }


def _patents(data_dir: Path) -> Iterator[dict[str, Any]]:
    for rec in _jsonl(data_dir / "cn-patent-g06f-cpc" / "patents.jsonl"):
        yield {
            "external_id": rec["publication_number"],
            "title": rec["title"],
            "abstract": rec["abstract"],
            "patent_numbers": [rec["publication_number"]],
            "field": "计算机/数据处理 (G06F)",
            "source": "cn-patent-g06f",
        }


def _fewclue(data_dir: Path) -> Iterator[dict[str, Any]]:
    folder = data_dir / "fewclue-csldcp"
    for name in ("csldcp_labeled.jsonl", "csl_true_keywords.jsonl", "csldcp_unlabeled.jsonl"):
        for rec in _jsonl(folder / name):
            yield {
                "external_id": rec["id"],
                "title": _title_from(rec["abstract"]),
                "abstract": rec["abstract"],
                "keywords": _keywords(rec.get("keywords")),
                "field": rec.get("discipline"),
                "source": "fewclue-csldcp",
            }


def shared_achievements(data_dir: Path, *, limit: int | None) -> Iterator[dict[str, Any]]:
    """CSL papers, patents and FewCLUE abstracts; a limit takes a fixed mix (CSL first, then patents, then FewCLUE)."""
    if limit is None:
        yield from _csl(data_dir)
        yield from _patents(data_dir)
        yield from _fewclue(data_dir)
        return
    # Half CSL (titled, keyworded, 67 disciplines), a third patents, the rest FewCLUE: a varied small corpus.
    csl = limit // 2
    patents = limit // 3
    yield from islice(_csl(data_dir), csl)
    yield from islice(_patents(data_dir), patents)
    yield from islice(_fewclue(data_dir), limit - csl - patents)


def load_demo(
    *, session_factory: sessionmaker[Session], data_dir: Path, limit: int | None = 1500, progress: bool = False
) -> list[str]:
    """Ingest the demo needs and achievements (idempotent); returns one summary line per kind."""
    if (data_dir / "ccf-bdci2019-tech-match" / "requirements.jsonl").is_file():
        needs: Iterator[dict[str, Any]] = shared_needs(data_dir)
        achievements = shared_achievements(data_dir, limit=limit)
        location = str(data_dir)
    else:
        needs = _jsonl(SAMPLE_DIR / "needs.jsonl")
        achievements = _jsonl(SAMPLE_DIR / "achievements.jsonl")
        location = str(SAMPLE_DIR)
    lines = []
    for kind, records in ((IngestKind.needs, needs), (IngestKind.achievements, achievements)):
        rows = list(enumerate(records, start=1))
        summary = ingest_rows(
            session_factory=session_factory,
            kind=kind,
            rows=rows,
            source="demo",
            location=location,
            progress=progress,
            total=len(rows),
        )
        lines.append(f"demo {format_summary(summary)}")
    return lines
