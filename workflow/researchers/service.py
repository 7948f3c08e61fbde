"""Researcher profiles and their matches to enterprise needs (measures 11 and 12: 科技专员, 科技副总, 协同创新工程师,
talent projects).

A researcher is matched to a need by two rankings fused by reciprocal rank (RRF, k = 60, scale-free): their
achievements as the served achievement ranking orders them for the need (the same ranker, the same visibility
rules: a researcher's best-ranked achievement is their rank), and their profile (fields and self-description) by
dense similarity to the need, its vector embedded once when the profile is written. Either alone places a researcher;
both place them higher. Every hit says which achievements matched and how the profile ranked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from accounts import audit
from accounts.policy import Principal
from catalog.indexing import Indexes
from catalog.match import match_text
from catalog.service import get_need
from core.errors import Forbidden, InvalidInput, NotFound
from models.db import locked, session_scope
from models.tables import (
    Achievement,
    ListingStatus,
    Need,
    Organisation,
    OrgKind,
    Researcher,
    ResearcherAchievement,
)
from workflow.researchers.schemas import ResearcherCreate, ResearcherUpdate

RRF_K = 60  # the usual constant of reciprocal-rank fusion
ACHIEVEMENT_DEPTH = 100  # how deep the need's achievement ranking is read for researchers' achievements
PROFILE_DEPTH = 100  # how many profiles the dense signal ranks
SUPPLY_KINDS = (OrgKind.university, OrgKind.research_institute, OrgKind.new_rd_institution)


@dataclass(frozen=True)
class ResearcherMatch:
    """A researcher for a need, the fused score and its parts."""

    researcher: Researcher
    score: float
    achievement_rank: int | None
    profile_rank: int | None
    profile_similarity: float | None
    achievements: list[dict[str, Any]] = field(default_factory=list)

    def reasons(self) -> dict[str, Any]:
        return {
            "ranks": {"achievements": self.achievement_rank, "profile": self.profile_rank},
            "profile_similarity": None if self.profile_similarity is None else round(self.profile_similarity, 4),
            "achievements": self.achievements,
            "fusion": f"reciprocal rank, k={RRF_K}",
        }


def profile_text(researcher: Researcher) -> str:
    """What the profile's vector is made of: title, fields, self-description (the name carries no meaning)."""
    return f"{researcher.title}。{'、'.join(researcher.fields or [])}。{researcher.self_description}"


def _model_name(embedder: Any) -> str:
    """The name a profile's vector is stored under (the encoder that made it)."""
    return str(getattr(embedder, "name", "unknown"))[:200]


def _embed(researcher: Researcher, embedder: Any) -> None:
    if embedder is None:
        researcher.profile_vector, researcher.profile_model = None, None
        return
    vector = np.asarray(embedder.encode_passages([profile_text(researcher)]), dtype=np.float32)[0]
    researcher.profile_vector = vector.tobytes()
    researcher.profile_model = _model_name(embedder)


def _is_current(researcher: Researcher, embedder: Any) -> bool:
    """Whether the stored vector is this encoder's: its name, and its width (float32 bytes)."""
    vector = researcher.profile_vector
    return vector is not None and researcher.profile_model == _model_name(embedder) and len(vector) == embedder.dim * 4


def _profile_vectors(researchers: Sequence[Researcher], embedder: Any) -> np.ndarray:
    """The profiles' vectors in the embedder's space: stored ones where the same model made them; the others (written
    without a model, or before the encoder changed: start-up re-embeds those, see reembed_stale) embedded now, in one
    call, and never compared across models."""
    stale = [r for r in researchers if not _is_current(r, embedder)]
    fresh: dict[int, np.ndarray] = {}
    if stale:
        vectors = np.asarray(embedder.encode_passages([profile_text(r) for r in stale]), dtype=np.float32)
        fresh = {r.id: v for r, v in zip(stale, vectors, strict=True)}
    return np.stack(
        [
            fresh[r.id] if r.id in fresh else np.frombuffer(r.profile_vector or b"", dtype=np.float32)
            for r in researchers
        ]
    )


def reembed_stale(*, session_factory: sessionmaker[Session], embedder: Any, batch: int = 64) -> int:
    """Embed again every profile whose stored vector another model made (or none did): after an encoder change, at
    start-up, so matching compares stored vectors again. Each batch is embedded outside any transaction and written
    in a short one of its own, and only where the profile's text is still what was embedded (an edit meanwhile
    embedded itself). How many were re-embedded."""
    if embedder is None:
        return 0
    with session_factory() as session:
        stale = [
            (r.id, profile_text(r))
            for r in session.scalars(select(Researcher).order_by(Researcher.id))
            if not _is_current(r, embedder)
        ]
    done = 0
    for start in range(0, len(stale), batch):
        chunk = stale[start : start + batch]
        vectors = np.asarray(embedder.encode_passages([text for _, text in chunk]), dtype=np.float32)
        with session_scope(session_factory) as session:
            for (researcher_id, text), vector in zip(chunk, vectors, strict=True):
                row = locked(session, Researcher, researcher_id)
                if row is None or profile_text(row) != text:
                    continue
                row.profile_vector, row.profile_model = vector.tobytes(), _model_name(embedder)
                done += 1
    return done


def _organisation_for(session: Session, data: ResearcherCreate, actor: Principal) -> Organisation:
    org_id = data.organisation_id if actor.is_staff else actor.organisation_id
    if not actor.is_staff and data.organisation_id not in (None, actor.organisation_id):
        raise Forbidden("you add researchers of your own organisation", field="organisation_id")
    if org_id is None:
        raise InvalidInput("name the researcher's organisation (organisation_id)", field="organisation_id")
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound(f"organisation {org_id} not found", field="organisation_id")
    if org.kind not in SUPPLY_KINDS:
        raise InvalidInput(
            f"organisation {org.id} is a {org.kind}: researchers come from universities and institutes",
            field="organisation_id",
        )
    return org


def _set_achievements(session: Session, researcher: Researcher, ids: Sequence[int]) -> None:
    """Link the researcher's achievements: each published and of the researcher's organisation."""
    wanted = list(dict.fromkeys(ids))
    rows = {a.id: a for a in session.scalars(select(Achievement).where(Achievement.id.in_(wanted)))}
    for i, achievement_id in enumerate(wanted):
        row = rows.get(achievement_id)
        if row is None or row.status != ListingStatus.published:
            raise InvalidInput(
                f"achievement {achievement_id} is not a published achievement", field=f"achievement_ids.{i}"
            )
        if row.owner_id != researcher.organisation_id:
            raise InvalidInput(
                f"achievement {achievement_id} belongs to another organisation than the researcher's",
                field=f"achievement_ids.{i}",
            )
    session.execute(delete(ResearcherAchievement).where(ResearcherAchievement.researcher_id == researcher.id))
    session.add_all(ResearcherAchievement(researcher_id=researcher.id, achievement_id=a) for a in wanted)


def create_researcher(*, session: Session, data: ResearcherCreate, embedder: Any, actor: Principal) -> Researcher:
    """Add a researcher of your organisation (staff: of any university or institute), embedding the profile."""
    org = _organisation_for(session, data, actor)
    researcher = Researcher(
        name=data.name,
        organisation_id=org.id,
        title=data.title,
        fields=list(data.fields),
        self_description=data.self_description,
        created_by=actor.user_id,
    )
    _embed(researcher, embedder)
    session.add(researcher)
    session.flush()
    _set_achievements(session, researcher, data.achievement_ids)
    session.flush()
    audit.record(
        session=session, actor=actor, action="researcher.create", target_kind="researcher", target_id=researcher.id
    )
    return researcher


def get_researcher(*, session: Session, researcher_id: int) -> Researcher:
    researcher = session.get(Researcher, researcher_id)
    if researcher is None:
        raise NotFound(f"researcher {researcher_id} not found")
    return researcher


def update_researcher(
    *, session: Session, researcher_id: int, data: ResearcherUpdate, embedder: Any, actor: Principal
) -> Researcher:
    """Change a profile (its organisation's users or staff); the vector follows the text."""
    researcher = get_researcher(session=session, researcher_id=researcher_id)
    if not (actor.is_staff or actor.owns(researcher.organisation_id)):
        raise NotFound(f"researcher {researcher_id} not found")
    before = profile_text(researcher)
    for key in ("title", "self_description", "active"):
        value = getattr(data, key)
        if value is not None:
            setattr(researcher, key, value)
    if data.fields is not None:
        researcher.fields = list(data.fields)
    if profile_text(researcher) != before or researcher.profile_vector is None:
        _embed(researcher, embedder)
    if data.achievement_ids is not None:
        _set_achievements(session, researcher, data.achievement_ids)
    session.flush()
    audit.record(
        session=session, actor=actor, action="researcher.update", target_kind="researcher", target_id=researcher.id
    )
    return researcher


def list_researchers(*, session: Session, organisation_id: int | None = None) -> list[Researcher]:
    stmt = select(Researcher).order_by(Researcher.id)
    if organisation_id is not None:
        stmt = stmt.where(Researcher.organisation_id == organisation_id)
    return list(session.scalars(stmt))


def achievements_of(session: Session, researcher_ids: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {i: [] for i in researcher_ids}
    stmt = select(ResearcherAchievement.researcher_id, ResearcherAchievement.achievement_id).where(
        ResearcherAchievement.researcher_id.in_(list(researcher_ids))
    )
    for researcher_id, achievement_id in session.execute(stmt.order_by(ResearcherAchievement.id)).tuples():
        out[researcher_id].append(achievement_id)
    return out


def need_text(need: Need) -> str:
    return f"{need.title}。{need.description or ''}"


def match_need(
    *,
    session: Session,
    indexes: Indexes,
    embedder: Any,
    need_id: int,
    viewer: Principal,
    k: int = 10,
    among: Sequence[int] | None = None,
) -> list[ResearcherMatch]:
    """The researchers best placed to help with a need (active ones; `among` limits them to a round's candidates)."""
    need = get_need(session=session, need_id=need_id, viewer=viewer)
    text = need_text(need)
    # 1. Their achievements, as the served achievement ranking orders them for this need.
    hits = match_text(
        session=session, indexes=indexes, text=text, target="achievements", k=ACHIEVEMENT_DEPTH, viewer=viewer
    )
    # Every hit in the depth counts, weak or not (each carries its strength): the calibration's threshold is strict
    # (a need's right answer is often "weak") and would leave most researchers without their achievements' evidence.
    rank_of = {h.id: (rank, h) for rank, h in enumerate(hits, start=1)}
    stmt = (
        select(ResearcherAchievement.researcher_id, ResearcherAchievement.achievement_id)
        .join(Researcher, Researcher.id == ResearcherAchievement.researcher_id)
        .where(ResearcherAchievement.achievement_id.in_(list(rank_of)), Researcher.active.is_(True))
    )
    if among is not None:
        stmt = stmt.where(Researcher.id.in_(list(among)))
    matched: dict[int, list[dict[str, Any]]] = {}
    for researcher_id, achievement_id in session.execute(stmt).tuples():
        rank, hit = rank_of[achievement_id]
        matched.setdefault(researcher_id, []).append(
            {"id": hit.id, "title": hit.title, "rank": rank, "score": round(hit.score, 4), "strength": hit.strength}
        )
    for found in matched.values():
        found.sort(key=lambda a: a["rank"])
    by_achievements = sorted(matched, key=lambda r: (matched[r][0]["rank"], r))
    achievement_rank = {r: i for i, r in enumerate(by_achievements, start=1)}

    # 2. Their profiles, by dense similarity to the need.
    people_stmt = select(Researcher).where(Researcher.active.is_(True))
    if among is not None:
        people_stmt = people_stmt.where(Researcher.id.in_(list(among)))
    people = {r.id: r for r in session.scalars(people_stmt)}
    profile_rank: dict[int, int] = {}
    similarity: dict[int, float] = {}
    if people and embedder is not None:
        query = np.asarray(embedder.encode_queries([text]), dtype=np.float32)[0]
        same = sorted(people.values(), key=lambda r: r.id)
        matrix = _profile_vectors(same, embedder)
        sims = matrix @ query
        order = np.argsort(-sims, kind="stable")[:PROFILE_DEPTH]
        for rank, i in enumerate(order, start=1):
            profile_rank[same[i].id] = rank
            similarity[same[i].id] = float(sims[i])

    out = []
    for researcher_id in set(achievement_rank) | set(profile_rank):
        if researcher_id not in people:
            continue
        a, p = achievement_rank.get(researcher_id), profile_rank.get(researcher_id)
        score = (1 / (RRF_K + a) if a else 0.0) + (1 / (RRF_K + p) if p else 0.0)
        out.append(
            ResearcherMatch(
                researcher=people[researcher_id],
                score=score,
                achievement_rank=a,
                profile_rank=p,
                profile_similarity=similarity.get(researcher_id),
                achievements=matched.get(researcher_id, [])[:5],
            )
        )
    out.sort(key=lambda m: (-m.score, m.researcher.id))
    return out[:k]
