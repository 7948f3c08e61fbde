"""Content hashes of listings, the same for every writer (the API and ingest), and the moderated columns."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from models.tables import Achievement, Need


def content_hash(values: Mapping[str, Any]) -> str:
    """sha1 of the canonical JSON of some values."""
    canonical = json.dumps(values, ensure_ascii=False, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()


# The columns a listing's content hash covers: every column a writer (the API or an ingest source) sets, so a
# re-ingest of unchanged content is "unchanged" whoever wrote the row last.
HASHED_COLUMNS: dict[type, tuple[str, ...]] = {
    Need: ("title", "description", "field", "region", "budget_yuan", "deadline", "visibility", "status", "owner_id"),
    Achievement: (
        "title",
        "abstract",
        "keywords",
        "field",
        "maturity_stage",
        "transfer_modes",
        "price_yuan",
        "patent_numbers",
        "status",
        "owner_id",
    ),
}
# Set by staff through the API; an ingest source never overrides them afterwards (moderation wins).
MODERATION_COLUMNS: dict[type, tuple[str, ...]] = {Need: ("status", "visibility"), Achievement: ("status",)}


def _canonical(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return f"{value.quantize(Decimal('0.01'))}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def listing_hash(model: type[Need] | type[Achievement], values: Mapping[str, Any]) -> str:
    """The content hash of a listing's columns, the same for the API and for ingest (absent columns count as None)."""
    return content_hash({name: _canonical(values.get(name)) for name in HASHED_COLUMNS[model]})
