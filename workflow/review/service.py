"""Expert review (专家论证): open a round by pooling, assign its pairs, take grades, merge them into graded pairs,
and report progress, agreement and what the grades say about each ranker.

Pooling is TREC-style: for each need, the top `depth` of the served hybrid ranker and of each single signal (BM25 over
jieba words, BM25 over character bigrams, dense e5) are merged into one blind set of pairs. Every ranker's own list is
kept (to a depth of 50, `review_runs`) so that, once graded, the round measures each ranker on the same judgements.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, lazyload

from accounts import audit
from accounts.policy import Principal
from catalog.indexing import Indexes
from core.errors import Conflict, InvalidInput, NotFound
from matching.fusion import FusionConfig
from models.base import utcnow
from models.db import locked
from models.tables import (
    Achievement,
    GradedPair,
    GradeSource,
    ListingStatus,
    Need,
    ReviewItem,
    ReviewPair,
    ReviewRound,
    ReviewRun,
    Role,
    RoundStatus,
    User,
)
from workflow.review.assignment import Judge, PairToJudge, assign
from workflow.review.schemas import GradeIn, RoundCreate

HYBRID = "hybrid"
# Each single signal ranks alone when its weight is the only one (z-scoring one list keeps its order).
SIGNAL_RANKERS: dict[str, str] = {"bm25-words": "words", "bm25-chars": "chars", "dense": "dense"}
RUN_DEPTH = 50  # each ranker's list is kept this deep, so Recall@50 can be read from the round
DISPUTE_SPREAD = 2  # grades this far apart go to staff for adjudication
METRICS = ("ndcg@10", "recall@50")


@dataclass(frozen=True)
class Opened:
    """A new round and what it produced."""

    round: ReviewRound
    pairs: int
    assignments: int


def need_query_text(need: Need) -> str:
    """What a need asks, as the matcher reads it (title first: the query's densest statement)."""
    return f"{need.title}。{need.description or ''}"


def ranked_lists(*, indexes: Indexes, text: str, k: int) -> dict[str, list[tuple[int, float]]]:
    """Each ranker's top k achievements for a need's text, best first: the served hybrid and each single signal."""
    lists: dict[str, list[tuple[int, float]]] = {
        HYBRID: [(h.id, float(h.score)) for h in indexes.search("achievements", text, k=k)]
    }
    for ranker, signal in SIGNAL_RANKERS.items():
        hits = indexes.search("achievements", text, k=k, fusion=FusionConfig.only(signal))
        ranked = [(h.reasons.get("ranks", {}).get(signal), h) for h in hits]
        # Only what that signal retrieved itself: the others' candidates carry no rank of it.
        ordered = sorted(((rank, h) for rank, h in ranked if rank), key=lambda pair: pair[0])
        lists[ranker] = [(h.id, float(h.reasons.get("scores", {}).get(signal, h.score))) for _, h in ordered]
    return lists


def pool(
    *, indexes: Indexes, needs: Sequence[Need], depth: int
) -> tuple[dict[int, set[int]], list[tuple[str, int, int, int, float]]]:
    """Pairs to judge per need (the union of every ranker's top `depth`) and every ranker's run to RUN_DEPTH:
    (ranker, need id, achievement id, rank, score)."""
    pooled: dict[int, set[int]] = {}
    runs: list[tuple[str, int, int, int, float]] = []
    k = max(depth, RUN_DEPTH)
    for need in needs:
        pooled[need.id] = set()
        for ranker, ranked_list in ranked_lists(indexes=indexes, text=need_query_text(need), k=k).items():
            for rank, (achievement_id, score) in enumerate(ranked_list[:k], start=1):
                runs.append((ranker, need.id, achievement_id, rank, score))
                if rank <= depth:
                    pooled[need.id].add(achievement_id)
    return pooled, runs


def affinities(
    *, embedder: Any, experts: Sequence[User], pairs: Mapping[int, tuple[Need, Achievement]]
) -> dict[tuple[int, int], float]:
    """(pair key, expert id) → how close the expert's stated expertise is to the pair, by the project's own encoder."""
    return text_affinities(
        embedder=embedder, experts=experts, texts={key: f"{n.title}。{a.title}" for key, (n, a) in pairs.items()}
    )


def text_affinities(
    *, embedder: Any, experts: Sequence[User], texts: Mapping[int, str]
) -> dict[tuple[int, int], float]:
    """(item key, expert id) → how close the expert's stated expertise is to the item's text, scaled to [0, 1]."""
    speaking = [e for e in experts if e.expertise.strip()]
    if not speaking or not texts or embedder is None:
        return {}
    keys = list(texts)
    experts_vec = np.asarray(embedder.encode_queries([e.expertise for e in speaking]), dtype=np.float32)
    items_vec = np.asarray(embedder.encode_passages([texts[key] for key in keys]), dtype=np.float32)
    sims = items_vec @ experts_vec.T  # cosines: both sides are normalised
    # e5 cosines sit in a narrow band; rescale to [0, 1] over this round so the preference has some force.
    lo, hi = float(sims.min()), float(sims.max())
    scaled = (sims - lo) / (hi - lo) if hi > lo else np.zeros_like(sims)
    return {(key, e.id): float(scaled[i, j]) for i, key in enumerate(keys) for j, e in enumerate(speaking)}


def active_experts(session: Session) -> list[User]:
    """Every active expert, by id: who a round may assign."""
    return list(
        session.scalars(select(User).where(User.role == Role.expert, User.active.is_(True)).order_by(User.id)).all()
    )


def record_assignments(*, session: Session, review: ReviewRound, items: Sequence[ReviewItem], actor: Principal) -> None:
    """Store a new round's items and audit each assignment."""
    session.add_all(items)
    session.flush()  # once for the round, not once an item
    for item in items:
        audit.record(
            session=session,
            actor=actor,
            action="review.assign",
            target_kind="review_item",
            target_id=item.id,
            after=audit.snapshot(item),
            detail={"round_id": review.id, "pair_id": item.pair_id, "expert_id": item.expert_id},
        )


def open_round(
    *, session: Session, indexes: Indexes, embedder: Any, data: RoundCreate, ranker_version: str, actor: Principal
) -> Opened:
    """Pool the needs' pairs, assign each to judges_per_pair experts without conflicts or overload, record it all."""
    ids = list(dict.fromkeys(data.need_ids))
    needs = {n.id: n for n in session.scalars(select(Need).where(Need.id.in_(ids))).all()}
    missing = [i for i in ids if i not in needs]
    if missing:
        raise InvalidInput(f"no need with id {missing[:20]}", field="need_ids", extra={"missing": missing[:100]})
    unpublished = [i for i in ids if needs[i].status != ListingStatus.published]
    if unpublished:
        raise InvalidInput(f"needs {unpublished[:20]} are not published", field="need_ids")
    experts = active_experts(session)
    if not experts:
        raise InvalidInput("there are no active experts to assign", field="need_ids")

    ordered = [needs[i] for i in ids]
    pooled, runs = pool(indexes=indexes, needs=ordered, depth=data.depth)
    # Every achievement any ranker returned (to depth 50), not only the pooled ones: a run that lost its unpooled
    # members would lift lower, judged ones into its top 10 and flatter its nDCG.
    wanted = {a for _, _, a, _, _ in runs}
    achievements = {
        a.id: a
        for a in session.scalars(
            select(Achievement).where(Achievement.id.in_(wanted), Achievement.status == ListingStatus.published)
        ).all()
    }
    keys = [(n.id, a) for n in ordered for a in sorted(pooled[n.id]) if a in achievements]
    if not keys:
        raise InvalidInput("the rankers found no published achievement for these needs", field="need_ids")
    key_no = {key: i for i, key in enumerate(keys)}
    pair_rows = {key: (needs[key[0]], achievements[key[1]]) for key in keys}

    judges = [Judge(id=e.id, organisation_id=e.organisation_id, max_load=data.max_load or len(keys)) for e in experts]
    to_judge = [
        PairToJudge(
            id=key_no[key],
            owners=frozenset(o for o in (pair_rows[key][0].owner_id, pair_rows[key][1].owner_id) if o is not None),
        )
        for key in keys
    ]
    closeness = affinities(embedder=embedder, experts=experts, pairs={key_no[k]: v for k, v in pair_rows.items()})
    assigned = assign(to_judge, judges, judges_per_pair=data.judges_per_pair, affinity=closeness)

    review = ReviewRound(
        name=data.name,
        depth=data.depth,
        judges_per_pair=data.judges_per_pair,
        max_load=data.max_load,
        ranker_version=ranker_version[:64],  # the column's width
        created_by=actor.user_id,
    )
    session.add(review)
    session.flush()
    pair_of: dict[tuple[int, int], ReviewPair] = {}
    for key in keys:
        pair = ReviewPair(round_id=review.id, need_id=key[0], achievement_id=key[1])
        session.add(pair)
        pair_of[key] = pair
    session.flush()
    session.add_all(
        ReviewRun(round_id=review.id, ranker=r, need_id=n, achievement_id=a, rank=rank, score=score)
        for r, n, a, rank, score in runs
        if a in achievements
    )
    items = [
        ReviewItem(round_id=review.id, pair_id=pair_of[key].id, expert_id=expert_id)
        for key in keys
        for expert_id in assigned[key_no[key]]
    ]
    record_assignments(session=session, review=review, items=items, actor=actor)
    count = len(items)
    audit.record(
        session=session,
        actor=actor,
        action="review.round.open",
        target_kind="review_round",
        target_id=review.id,
        after=audit.snapshot(review),
        detail={"needs": ids, "pairs": len(keys), "assignments": count},
    )
    return Opened(round=review, pairs=len(keys), assignments=count)


def get_round(*, session: Session, round_id: int) -> ReviewRound:
    """A round by id (staff)."""
    review = session.get(ReviewRound, round_id)
    if review is None:
        raise NotFound(f"no review round {round_id}")
    return review


def list_rounds(*, session: Session) -> list[ReviewRound]:
    """Every round, newest first."""
    return list(session.scalars(select(ReviewRound).order_by(ReviewRound.id.desc())).all())


def close_round(*, session: Session, round_id: int, actor: Principal) -> ReviewRound:
    """Stop taking grades; what is merged stays as graded pairs. The round's row is locked: grades being written
    finish first, later ones find it closed."""
    review = locked(session, ReviewRound, round_id)
    if review is None:
        raise NotFound(f"no review round {round_id}")
    before = audit.snapshot(review)
    review.status = RoundStatus.closed
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="review.round.close",
        target_kind="review_round",
        target_id=review.id,
        before=before,
        after=audit.snapshot(review),
    )
    return review


def queue(*, session: Session, expert: Principal, limit: int = 100) -> tuple[list[ReviewItem], int]:
    """The first `limit` of this expert's ungraded items in open rounds, oldest round first (blind: pairs only, no
    ranker), and how many there are in all."""
    if expert.user_id is None:
        return [], 0
    waiting = (
        select(ReviewItem)
        .join(ReviewRound, ReviewRound.id == ReviewItem.round_id)
        .where(
            ReviewItem.expert_id == expert.user_id,
            ReviewItem.graded_at.is_(None),
            ReviewRound.status == RoundStatus.open,
        )
    )
    total = session.scalar(select(func.count()).select_from(waiting.subquery())) or 0
    items = session.scalars(waiting.order_by(ReviewItem.round_id, ReviewItem.id).limit(limit)).unique().all()
    return list(items), int(total)


def grade(*, session: Session, item_id: int, data: GradeIn, expert: Principal) -> ReviewItem:
    """Record the assigned expert's grade (or can't judge); a second answer replaces the first while the round is open.

    Another expert's item is 404: an expert learns nothing of items that are not theirs.
    """
    item = session.get(ReviewItem, item_id)
    if item is None or expert.user_id is None or item.expert_id != expert.user_id:
        raise NotFound(f"no review item {item_id} in your queue")
    _lock_pair(session, item.pair_id)
    # A shared lock on the round: graders go on side by side, and a close (FOR UPDATE) waits for them, so no grade
    # lands in a round after it closed.
    session.execute(select(ReviewRound.id).where(ReviewRound.id == item.round_id).with_for_update(read=True))
    review = session.get(ReviewRound, item.round_id, populate_existing=True)
    if review is None or review.status != RoundStatus.open:
        raise Conflict(f"review round {item.round_id} is closed; grades can no longer change")
    before = audit.snapshot(item)
    item.grade = data.grade
    item.cant_judge = data.cant_judge
    item.reason = data.reason
    item.graded_at = utcnow()
    session.flush()
    audit.record(
        session=session,
        actor=expert,
        action="review.grade",
        target_kind="review_item",
        target_id=item.id,
        before=before,
        after=audit.snapshot(item),
        detail={"round_id": item.round_id, "pair_id": item.pair_id},
    )
    merge_pair(session=session, pair=item.pair, review=review)
    return item


def merge_pair(*, session: Session, pair: ReviewPair, review: ReviewRound) -> None:
    """The pair's grade from its judges once all have answered: the lower median of the real grades (can't judge
    is no grade); grades DISPUTE_SPREAD or more apart wait for staff. The merged grade is a graded pair (a qrel)."""
    items = session.scalars(select(ReviewItem).where(ReviewItem.pair_id == pair.id)).all()
    if pair.adjudicated_at is None:  # once staff have settled it, later answers do not move it
        done = all(i.graded_at is not None for i in items)
        grades = [i.grade for i in items if i.graded_at is not None and not i.cant_judge and i.grade is not None]
        pair.disputed = done and bool(grades) and max(grades) - min(grades) >= DISPUTE_SPREAD
        pair.grade = statistics.median_low(grades) if done and grades and not pair.disputed else None
    session.flush()
    _store_graded_pair(session=session, pair=pair, review=review)


def adjudicate(*, session: Session, pair_id: int, grade_value: int, actor: Principal) -> ReviewPair:
    """Staff settle a pair (disputed or not) with the grade that stands."""
    pair = _lock_pair(session, pair_id)
    if pair is None:
        raise NotFound(f"no review pair {pair_id}")
    review = get_round(session=session, round_id=pair.round_id)
    before = audit.snapshot(pair)
    pair.grade = grade_value
    pair.disputed = False
    pair.adjudicated_by = actor.user_id  # None for the bootstrap admin token, which is no user
    pair.adjudicated_at = utcnow()
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="review.adjudicate",
        target_kind="review_pair",
        target_id=pair.id,
        before=before,
        after=audit.snapshot(pair),
    )
    _store_graded_pair(session=session, pair=pair, review=review)
    return pair


def _lock_pair(session: Session, pair_id: int) -> ReviewPair | None:
    """Lock a pair's row for this transaction (PostgreSQL: FOR UPDATE; SQLite writers are serialised already).

    Two judges sending a pair's last two grades at once would otherwise each read the other's item as ungraded, and
    the pair would never be merged (or both would insert its graded pair).
    """
    # No eager joins in the locking query: PostgreSQL refuses FOR UPDATE over the nullable side of an outer join.
    stmt = (
        select(ReviewPair)
        .where(ReviewPair.id == pair_id)
        .options(lazyload("*"))
        .with_for_update(of=ReviewPair)
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).one_or_none()


def _store_graded_pair(*, session: Session, pair: ReviewPair, review: ReviewRound) -> None:
    if review.call_id is not None or pair.need_id is None or pair.achievement_id is None:
        return  # a bid's grade says how strongly to shortlist it, not how well a listing matches a need
    batch = f"round-{review.id}"
    existing = session.scalar(
        select(GradedPair).where(
            GradedPair.source == GradeSource.review,
            GradedPair.batch == batch,
            GradedPair.need_id == pair.need_id,
            GradedPair.achievement_id == pair.achievement_id,
        )
    )
    if pair.grade is None:
        if existing is not None:
            session.execute(delete(GradedPair).where(GradedPair.id == existing.id))
        return
    if existing is None:
        session.add(
            GradedPair(
                need_id=pair.need_id,
                achievement_id=pair.achievement_id,
                grade=pair.grade,
                source=GradeSource.review,
                batch=batch,
                round_id=review.id,
                ranker_version=review.ranker_version,
            )
        )
    else:
        existing.grade = pair.grade
        existing.at = utcnow()
    session.flush()


# --- the round's report -----------------------------------------------------------------------------------------


def progress(*, session: Session, round_id: int) -> dict[str, int]:
    """Items answered (a grade or can't judge) out of all items; pairs with a merged grade; disputed pairs."""
    total = session.scalar(select(func.count()).where(ReviewItem.round_id == round_id)) or 0
    graded = (
        session.scalar(select(func.count()).where(ReviewItem.round_id == round_id, ReviewItem.graded_at.is_not(None)))
        or 0
    )
    pairs = session.scalar(select(func.count()).where(ReviewPair.round_id == round_id)) or 0
    merged = (
        session.scalar(select(func.count()).where(ReviewPair.round_id == round_id, ReviewPair.grade.is_not(None))) or 0
    )
    disputed = (
        session.scalar(select(func.count()).where(ReviewPair.round_id == round_id, ReviewPair.disputed.is_(True))) or 0
    )
    return {"graded": graded, "total": total, "pairs": pairs, "merged": merged, "disputed": disputed}


def agreement(*, session: Session, round_id: int) -> dict[str, Any]:
    """Krippendorff's alpha (ordinal) over the grades given so far (experts × pairs; can't judge is missing)."""
    import krippendorff

    items = session.scalars(
        select(ReviewItem).where(
            ReviewItem.round_id == round_id, ReviewItem.graded_at.is_not(None), ReviewItem.cant_judge.is_(False)
        )
    ).all()
    experts = sorted({i.expert_id for i in items})
    pairs = sorted({i.pair_id for i in items})
    out: dict[str, Any] = {"krippendorff_alpha": None, "level": "ordinal", "coders": len(experts), "units": 0}
    if len(experts) < 2:
        return out
    row = {e: r for r, e in enumerate(experts)}
    col = {p: c for c, p in enumerate(pairs)}
    data = np.full((len(experts), len(pairs)), np.nan)
    for i in items:
        data[row[i.expert_id], col[i.pair_id]] = i.grade
    pairable = int((np.sum(~np.isnan(data), axis=0) >= 2).sum())
    out["units"] = pairable
    if pairable == 0 or len(np.unique(data[~np.isnan(data)])) < 2:
        return out  # nothing graded twice yet, or every grade alike: alpha is undefined
    alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal", value_domain=[0, 1, 2, 3]))
    out["krippendorff_alpha"] = round(alpha, 4)
    return out


def disputed_pairs(*, session: Session, round_id: int) -> list[tuple[ReviewPair, list[int | None]]]:
    """Pairs whose grades differ by DISPUTE_SPREAD or more, awaiting staff, with the grades given."""
    pairs = session.scalars(
        select(ReviewPair).where(ReviewPair.round_id == round_id, ReviewPair.disputed.is_(True)).order_by(ReviewPair.id)
    ).all()
    out = []
    for pair in pairs:
        grades = session.scalars(
            select(ReviewItem.grade).where(ReviewItem.pair_id == pair.id).order_by(ReviewItem.id)
        ).all()
        out.append((pair, list(grades)))
    return out


def metrics(*, session: Session, review: ReviewRound) -> dict[str, Any]:
    """nDCG@10 and Recall@50 of every ranker the round pooled, on the round's merged grades (ranx).

    Only needs with at least one pair graded 1 or more count (a need with nothing relevant has no nDCG); pairs not
    yet merged count as unjudged. Also per need field. Keys are "<ranker>@<ranker version>".
    """
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    fields: dict[str, str] = {}
    if review.call_id is not None:  # a call's shortlisting round ranks bids, not a ranker's matches
        return {"queries": 0, "by_ranker": {}, "by_field": {}}
    for pair in session.scalars(select(ReviewPair).where(ReviewPair.round_id == review.id)).all():
        assert pair.need is not None  # pooled rounds pair a need with an achievement
        if pair.grade is not None:
            qrels[str(pair.need_id)][str(pair.achievement_id)] = int(pair.grade)
        fields[str(pair.need_id)] = pair.need.field or "(none)"
    judged = {q: docs for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    runs: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in session.scalars(select(ReviewRun).where(ReviewRun.round_id == review.id)).all():
        runs[r.ranker][str(r.need_id)][str(r.achievement_id)] = float(RUN_DEPTH + 1 - r.rank)  # the stored order
    out: dict[str, Any] = {"queries": len(judged), "by_ranker": {}, "by_field": {}}
    if not judged:
        return out
    for ranker in sorted(runs):
        key = f"{ranker}@{review.ranker_version}"
        out["by_ranker"][key] = _evaluate(judged, runs[ranker])
        for field in sorted({fields[q] for q in judged}):
            subset = {q: d for q, d in judged.items() if fields[q] == field}
            out["by_field"].setdefault(field, {})[key] = _evaluate(subset, runs[ranker])
    return out


def _evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    present = {q: dict(run.get(q, {})) for q in qrels}
    if not any(present.values()):
        return {m: 0.0 for m in METRICS} | {"queries": len(qrels)}
    scores = evaluate(
        Qrels({q: dict(d) for q, d in qrels.items()}),
        Run({q: d for q, d in present.items() if d}),
        list(METRICS),
        make_comparable=True,
    )
    return {m: round(float(scores[m]), 4) for m in METRICS} | {"queries": len(qrels)}


def evaluate_current(
    *, session: Session, indexes: Indexes, ranker_version: str, source: GradeSource = GradeSource.review
) -> dict[str, Any]:
    """The ranker serving now, measured on every stored grade of a source (the newest grade of a pair wins).

    Unlike a round's own figures (the ranker of that day on its own pool), this re-runs today's rankers over the live
    index, so an achievement nobody has graded can enter the top 10: `judged@10` says how much of each ranker's top 10
    carries a grade (unjudged counts as not relevant, so a low share means the figure is a lower bound).
    """
    rows = session.scalars(select(GradedPair).where(GradedPair.source == source).order_by(GradedPair.at)).all()
    grades: dict[int, dict[int, int]] = defaultdict(dict)
    for row in rows:
        grades[row.need_id][row.achievement_id] = row.grade
    wanted = [n for n, docs in grades.items() if any(g > 0 for g in docs.values())]
    needs = session.scalars(select(Need).where(Need.id.in_(wanted)).order_by(Need.id)).all()
    qrels = {str(n.id): {str(a): g for a, g in grades[n.id].items()} for n in needs}
    runs: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    judged: dict[str, list[float]] = defaultdict(list)
    for need in needs:
        for ranker, ranked in ranked_lists(indexes=indexes, text=need_query_text(need), k=RUN_DEPTH).items():
            runs[ranker][str(need.id)] = {str(a): float(RUN_DEPTH + 1 - r) for r, (a, _) in enumerate(ranked, 1)}
            top = [a for a, _ in ranked[:10]]
            judged[ranker].append(sum(a in grades[need.id] for a in top) / max(1, len(top)))
    out: dict[str, Any] = {"source": str(source), "queries": len(qrels), "pairs": len(rows), "by_ranker": {}}
    for ranker in sorted(runs):
        figures = _evaluate(qrels, runs[ranker])
        figures["judged@10"] = round(sum(judged[ranker]) / max(1, len(judged[ranker])), 4)
        out["by_ranker"][f"{ranker}@{ranker_version}"] = figures
    return out
