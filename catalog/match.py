"""Ranked, explained matches both ways: text → achievements/needs, need → achievements, achievement → needs."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import numpy as np
from scipy import sparse
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from accounts.policy import Principal
from catalog.indexing import Indexes, Target
from catalog.service import get_achievement, get_need, visible_to
from core.errors import InvalidInput
from matching.text import normalise
from models.tables import Achievement, ListingStatus, Need, Visibility

ANONYMOUS_VIEWER = Principal()

FILTERS: dict[str, tuple[str, ...]] = {
    "achievements": ("field", "maturity_stage", "source"),
    "needs": ("field", "region", "visibility", "source"),
}


# Two rows whose normalised texts share this much of their character trigrams (Jaccard) are one result filed twice.
DUPLICATE_SIMILARITY = 0.85


@dataclass(frozen=True)
class Duplicate:
    """A row collapsed under a better-ranked one with (near-)identical text."""

    id: int
    external_id: str
    title: str


@dataclass(frozen=True)
class Match:
    """One ranked hit, with the row's identity, why it ranked, how strong it is, and its collapsed duplicates."""

    id: int
    external_id: str
    title: str
    score: float
    reasons: dict[str, Any]
    # The calibrated probability that people would grade this pair a real match, and its label (None: no
    # calibration fits the served ranker).
    probability: float | None = None
    strength: str | None = None
    duplicates: tuple[Duplicate, ...] = ()


def weak_only(matches: Sequence[Match]) -> bool:
    """Whether a non-empty answer's best hit is weak: the query found nothing people would call a match."""
    return bool(matches) and matches[0].strength == "weak"


def match_text(
    *,
    session: Session,
    indexes: Indexes,
    text: str,
    target: Target,
    k: int = 10,
    filters: Mapping[str, str] | None = None,
    viewer: Principal = ANONYMOUS_VIEWER,
    exclude_ids: tuple[int, ...] = (),
    within: Collection[int] | None = None,
) -> list[Match]:
    """The k best published rows of the target for a free text, explained; `within` limits the search to those ids
    (inside retrieval, so the k come from them however the rest of the catalogue ranks)."""
    filters = dict(filters or {})
    for key in filters:
        if key not in FILTERS[target]:
            raise InvalidInput(
                f"cannot filter {target} on {key!r}; allowed: {', '.join(FILTERS[target])}", field=f"filters.{key}"
            )
    if target == "needs" and not viewer.is_staff:
        # Private needs: their own organisation's are matched too, everyone else's never (excluded inside the
        # search, so the viewer still gets k results). Staff see every need.
        exclude_ids = (*exclude_ids, *_others_private_needs(session, viewer))
    query = normalise(text)
    if not query.strip():
        raise InvalidInput("text is empty after normalisation", field="text")
    # More than k, so that k remain once duplicates collapse.
    hits = indexes.search(
        target, query, k=k + min(2 * k, 50), filters=filters or None, exclude_ids=exclude_ids, within=within
    )
    # Only what is shown and compared, as plain rows: hydrating ORM objects cost twice the query. Withdrawn rows and
    # rows the viewer may not see are dropped here, in SQL (the index follows the DB; a row withdrawn a moment ago
    # is not shown).
    model: type[Need] | type[Achievement] = Achievement if target == "achievements" else Need
    body = Achievement.abstract if target == "achievements" else Need.description
    wanted = select(model.id, model.external_id, model.title, body.label("body")).where(
        model.id.in_([h.id for h in hits]), model.status == ListingStatus.published
    )
    if not viewer.is_staff:
        wanted = wanted.where(visible_to(model, viewer))
    rows = {r.id: r for r in session.execute(wanted)}
    shown = [(hit, row) for hit in hits if (row := rows.get(hit.id)) is not None]
    same = _near_duplicates([f"{row.title}{row.body or ''}" for _, row in shown])
    out: list[Match] = []
    heads: list[int] = []  # positions in `shown` of the rows in `out`
    for i, (hit, row) in enumerate(shown):
        twin_of = next((n for n, head in enumerate(heads) if same[head, i]), None)
        if twin_of is not None:
            twin = Duplicate(id=row.id, external_id=row.external_id, title=row.title)
            out[twin_of] = replace(out[twin_of], duplicates=(*out[twin_of].duplicates, twin))
            continue
        if len(out) == k:
            continue  # full: later rows may still be duplicates of those shown
        heads.append(i)
        out.append(
            Match(id=row.id, external_id=row.external_id, title=row.title, score=float(hit.score), reasons=hit.reasons)
        )
    if indexes.strength is not None:
        graded = indexes.strength.of([m.score for m in out])
        out = [replace(m, probability=p, strength=label) for m, (p, label) in zip(out, graded, strict=True)]
    return out


def _near_duplicates(texts: Sequence[str]) -> np.ndarray:
    """same[i, j]: rows i and j (their title and description or abstract, end to end) share at least
    DUPLICATE_SIMILARITY of their character trigrams (Jaccard), in their normalised texts (script, width, case) with
    punctuation and spaces dropped: the same result filed twice shares nearly all of them, whatever its formatting.

    One pass for all the rows: every trigram of every row is packed into one integer (`_codes`), the codes are
    numbered together, and one sparse product of the row × trigram incidence with itself counts what each pair
    shares. Comparing each row with each shown row one pair at a time cost a match about as much as its BM25 did."""
    n = len(texts)
    if n == 0:
        return np.zeros((0, 0), dtype=bool)
    codes, owner = _codes(texts)
    _, column = np.unique(codes, return_inverse=True)
    width = int(column.max()) + 1
    # Each (row, trigram) once, however often the row repeats the trigram: sorted by row, then trigram, which is
    # the incidence matrix's CSR layout.
    cells = np.sort(owner * width + column.ravel())
    cells = cells[np.concatenate(([True], cells[1:] != cells[:-1]))]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(cells // width, minlength=n), out=indptr[1:])
    incidence = sparse.csr_matrix((np.ones(len(cells), dtype=np.int32), cells % width, indptr), shape=(n, width))
    shared = (incidence @ incidence.T).toarray().astype(np.int64)
    size = np.diag(shared)
    return shared >= DUPLICATE_SIMILARITY * (size[:, None] + size[None, :] - shared)


def _codes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every text's character trigrams (repeats kept) and the text each belongs to. A trigram is its three code points
    (< 2**21 each) packed into one uint64, so equal codes are exactly equal trigram strings. A text shorter than three
    is one code of its own (top bit set, NUL-padded: the text cannot hold NUL once non-word characters are gone).

    All rows at once, in arrays: their case-folded texts as code points end to end, the non-word ones dropped (what
    `[\\W_]` matches: exactly the points that are not `str.isalnum()`), then a code at every point, of which only
    those starting and ending inside one text are kept. A regular expression per row cost more than the rest."""
    # Stored texts are tidied on every write (script and width: catalog.service, ingest.records); case is what is left
    # to fold, and converting scripts again per hit cost more than the rest of this check.
    folded = [text.lower() for text in texts]
    raw = np.frombuffer("".join(folded).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    word = _is_word(raw)
    points = raw[word].astype(np.uint64)
    lengths = np.bincount(np.repeat(np.arange(len(texts)), [len(t) for t in folded])[word], minlength=len(folded))
    every = _pack(points) if len(points) >= 3 else np.zeros(0, dtype=np.uint64)  # a code at every point
    ends = np.cumsum(lengths)
    long = np.flatnonzero(lengths >= 3)
    count = lengths[long] - 2  # a text's trigrams start at its first lengths - 2 points
    skip = ends[long] - lengths[long] - (np.cumsum(count) - count)  # where it starts, less the codes before it
    codes = [every[np.arange(int(count.sum()), dtype=np.int64) + np.repeat(skip, count)]]
    owner = [np.repeat(long, count)]
    for i in np.flatnonzero(lengths < 3).tolist():
        padded = np.zeros(3, dtype=np.uint64)
        padded[: lengths[i]] = points[ends[i] - lengths[i] : ends[i]]
        codes.append(np.uint64(1 << 63) | _pack(padded))
        owner.append(np.array([i], dtype=np.int64))
    return np.concatenate(codes), np.concatenate(owner)


@cache
def _word_bmp() -> np.ndarray:
    """Whether each code point of the Basic Multilingual Plane is a word character (built once, ~65k checks)."""
    return np.fromiter((chr(c).isalnum() for c in range(0x10000)), dtype=bool, count=0x10000)


def _is_word(points: np.ndarray) -> np.ndarray:
    """str.isalnum() of each code point: a table for the BMP, one check per distinct point beyond it (rare)."""
    table = _word_bmp()
    word = table[np.minimum(points, 0xFFFF)]
    beyond = points > 0xFFFF
    if beyond.any():
        astral, where = np.unique(points[beyond], return_inverse=True)
        word[beyond] = np.array([chr(int(c)).isalnum() for c in astral], dtype=bool)[where]
    return word


def _pack(points: np.ndarray) -> np.ndarray:
    """Each run of three code points as one integer."""
    return (points[:-2] << np.uint64(42)) | (points[1:-1] << np.uint64(21)) | points[2:]


def _others_private_needs(session: Session, viewer: Principal) -> list[int]:
    """Published private needs of organisations other than the viewer's."""
    stmt = select(Need.id).where(Need.visibility == Visibility.private, Need.status == ListingStatus.published)
    if viewer.organisation_id is not None:
        stmt = stmt.where(or_(Need.owner_id.is_(None), Need.owner_id != viewer.organisation_id))
    return list(session.scalars(stmt).all())


def _query_text(row: Need | Achievement) -> str:
    if isinstance(row, Need):
        return f"{row.title}。{row.description or ''}"
    keywords = "、".join(row.keywords or ())
    return f"{row.title}。{keywords}。{row.abstract or ''}"


def matches_for_need(
    *,
    session: Session,
    indexes: Indexes,
    need_id: int,
    k: int = 10,
    viewer: Principal = ANONYMOUS_VIEWER,
    within: Collection[int] | None = None,
) -> list[Match]:
    """The best achievements (among `within`, when given) for a need the viewer may see."""
    need = get_need(session=session, need_id=need_id, viewer=viewer)
    return match_text(
        session=session,
        indexes=indexes,
        text=_query_text(need),
        target="achievements",
        k=k,
        viewer=viewer,
        within=within,
    )


def matches_for_achievement(
    *,
    session: Session,
    indexes: Indexes,
    achievement_id: int,
    k: int = 10,
    viewer: Principal = ANONYMOUS_VIEWER,
    within: Collection[int] | None = None,
) -> list[Match]:
    """The best needs (among `within`, when given) for an achievement the viewer may see (public needs only, unless
    staff)."""
    achievement = get_achievement(session=session, achievement_id=achievement_id, viewer=viewer)
    return match_text(
        session=session,
        indexes=indexes,
        text=_query_text(achievement),
        target="needs",
        k=k,
        viewer=viewer,
        within=within,
    )
