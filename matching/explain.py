"""Why a hit matched: shared terms by idf, each signal's raw score, its part of the fused score and its rank."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from matching.fusion import SIGNALS


def shared_terms(query: Sequence[str], doc: Sequence[str], *, idf: Callable[[str], float], top: int = 5) -> list[str]:
    """Terms the query and the document share, rarest (highest idf) first; ties in query order."""
    doc_set = set(doc)
    seen: dict[str, int] = {}
    for position, term in enumerate(query):
        if term in doc_set and term not in seen:
            seen[term] = position
    # A term contained in another shared term says the same thing less well: the longer one is kept. Checked in
    # rank order, only until `top` are found (a hit's texts share hundreds of bigrams; every pair would be quadratic).
    out: list[str] = []
    if top <= 0:
        return out
    for t in sorted(seen, key=lambda t: (-idf(t), seen[t])):
        if not any(t != o and t in o for o in seen):
            out.append(t)
            if len(out) == top:
                break
    return out


def reasons(
    *,
    terms: list[str],
    bigrams: list[str],
    keywords: list[str],
    raw: dict[str, float],
    parts: dict[str, float],
    ranks: dict[str, int],
    method: str,
) -> dict[str, Any]:
    """The JSON-serialisable explanation attached to one hit."""
    return {
        "shared_terms": terms,
        "shared_bigrams": bigrams,
        "matched_keywords": keywords,
        "fusion": method,
        "scores": {s: round(float(raw[s]), 4) for s in SIGNALS if s in raw},
        "parts": {s: round(float(parts.get(s, 0.0)), 4) for s in SIGNALS if s in raw},
        # 1-based rank in each list's candidates; None when that list did not retrieve the document.
        "ranks": {s: (int(ranks[s]) or None) for s in SIGNALS if s in ranks},
    }
