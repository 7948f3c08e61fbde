"""Demo data: the corpus shipped in the repo (demo_data/), or the real corpora in ../shared/data when present."""

from __future__ import annotations

import ast
import gzip
import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from ingest.service import format_summary, ingest_rows
from models.tables import IngestKind

SAMPLE_DIR = Path(__file__).resolve().parent / "demo_data"
# ~2,300 CSL papers and CNIPA patents chosen for the city's industries (ingest/demo_build.py), and needs written for
# the project; their licences and attribution are in demo_data/ATTRIBUTION.md and on every row.
SHIPPED_ACHIEVEMENTS = SAMPLE_DIR / "achievements.jsonl.gz"
SHIPPED_NEEDS = SAMPLE_DIR / "needs.jsonl"


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
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


def shipped_needs() -> Iterator[dict[str, Any]]:
    """The needs written for the project (fictional Weihai enterprises' needs)."""
    return _jsonl(SHIPPED_NEEDS)


def shipped_achievements() -> Iterator[dict[str, Any]]:
    """The shipped CSL papers and patents, each row with its licence and attribution."""
    return _jsonl(SHIPPED_ACHIEVEMENTS)


def shared_needs(data_dir: Path) -> Iterator[dict[str, Any]]:
    """CCF BDCI 2019 enterprise needs."""
    for rec in _jsonl(data_dir / "ccf-bdci2019-tech-match" / "requirements.jsonl"):
        yield {
            "external_id": rec["rid"],
            "title": rec["title"],
            "description": rec.get("content", ""),
            "source": "ccf-bdci2019",
        }


def csl_achievements(path: Path) -> Iterator[dict[str, Any]]:
    """CSL papers (csl_2k.jsonl) as achievement rows; the shipped corpus uses the same mapping."""
    for rec in _jsonl(path):
        yield {
            "external_id": rec["id"],
            "title": rec["title"],
            "abstract": rec["abstract"],
            "keywords": _keywords(rec.get("keywords")),
            "field": rec.get("discipline"),
            "source": "csl",
        }


def patent_achievements(path: Path) -> Iterator[dict[str, Any]]:
    """CNIPA G06F patents (patents.jsonl) as achievement rows; the shipped corpus uses the same mapping."""
    for rec in _jsonl(path):
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
    csl = csl_achievements(data_dir / "csl-benchmark-2k" / "csl_2k.jsonl")
    patents = patent_achievements(data_dir / "cn-patent-g06f-cpc" / "patents.jsonl")
    if limit is None:
        yield from csl
        yield from patents
        yield from _fewclue(data_dir)
        return
    # Half CSL (titled, keyworded, 67 disciplines), a third patents, the rest FewCLUE: a varied small corpus.
    n_csl = limit // 2
    n_patents = limit // 3
    yield from islice(csl, n_csl)
    yield from islice(patents, n_patents)
    yield from islice(_fewclue(data_dir), limit - n_csl - n_patents)


def open_corpus_pairs(data_dir: Path) -> Iterator[tuple[str, str]]:
    """(title, abstract) of the open corpora in ../shared (CSL, patents, CSL author keywords) for encoder adaptation.

    The CSL keyword file has no titles; its author keywords, joined, stand in for one (a keyword need reads so).
    """
    for rec in _jsonl(data_dir / "csl-benchmark-2k" / "csl_2k.jsonl"):
        yield rec["title"], rec["abstract"]
    for rec in _jsonl(data_dir / "cn-patent-g06f-cpc" / "patents.jsonl"):
        yield rec["title"], rec["abstract"]
    for rec in _jsonl(data_dir / "fewclue-csldcp" / "csl_true_keywords.jsonl"):
        yield "、".join(_keywords(rec.get("keywords"))), rec["abstract"]


def has_shared_data(data_dir: Path) -> bool:
    """Whether the real corpora of ../shared/data are there (a fresh clone elsewhere has none)."""
    return (data_dir / "ccf-bdci2019-tech-match" / "requirements.jsonl").is_file()


def load_demo(
    *,
    session_factory: sessionmaker[Session],
    data_dir: Path,
    limit: int | None = 1500,
    progress: bool = False,
    shipped: bool | None = None,
) -> list[str]:
    """Ingest the demo needs and achievements (idempotent); returns a line naming the corpus, then one per kind.

    shipped=None chooses: the real corpora in data_dir when present (limit achievements of them, None for all),
    else the corpus shipped in the repo, whole. shipped=True always takes the shipped one.
    """
    if shipped is None:
        shipped = not has_shared_data(data_dir)
    if shipped:
        needs, achievements = shipped_needs(), shipped_achievements()
        location = str(SAMPLE_DIR)
        lines = [f"demo corpus: shipped ({SAMPLE_DIR}; licences and attribution in ATTRIBUTION.md there)"]
    else:
        needs, achievements = shared_needs(data_dir), shared_achievements(data_dir, limit=limit)
        location = str(data_dir)
        lines = [f"demo corpus: {data_dir} ({'all' if limit is None else limit} achievements)"]
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
