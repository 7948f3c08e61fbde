"""Organisations as the subsidy engine's parties (shared by the ledger and measure 5's calls)."""

from __future__ import annotations

from typing import Any

from models.tables import Organisation

PARTY_PREFIX = "org-"


def party_key(organisation_id: int) -> str:
    """An organisation's party id in the engine's request."""
    return f"{PARTY_PREFIX}{organisation_id}"


def party_of(org: Organisation) -> dict[str, Any]:
    """An organisation as the engine's party, with the facts staff recorded on it."""
    return {
        "id": party_key(org.id),
        "kind": str(org.kind),
        "in_weihai": bool(org.in_weihai),
        "has_rd_activity": org.has_rd_activity,
        "public_institution": org.public_institution,
        "filed": org.filed,
        "tech_sme": org.tech_sme,
        "early_stage_assessed": org.early_stage_assessed,
    }
