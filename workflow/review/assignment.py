"""Which experts judge which pairs: a min-cost flow (networkx network simplex), conflict-free, under load limits.

source → pair (capacity judges_per_pair) → expert (capacity 1, only where the expert has no conflict of interest:
their organisation owns neither the need nor the achievement; cost lower for higher affinity) → sink (capacity the
expert's load limit). A flow that saturates every pair's edge is an assignment; its minimum cost prefers the
experts whose stated expertise is closest to the pair. A maximum flow short of that proves no assignment exists,
and the error says which pairs could not be covered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

from core.errors import InvalidInput

_COST_SCALE = 1000  # network simplex wants integer costs: affinity in [0, 1] → cost in [0, 1000]


@dataclass(frozen=True)
class Judge:
    """An expert who may be assigned: their affiliation (None: independent) and how many items they take at most."""

    id: int
    organisation_id: int | None
    max_load: int


@dataclass(frozen=True)
class PairToJudge:
    """A (need, achievement) pair and the organisations that own each side (a conflict for their experts)."""

    id: int
    owners: frozenset[int]


def conflicted(judge: Judge, pair: PairToJudge) -> bool:
    """Whether the judge's organisation owns the need or the achievement."""
    return judge.organisation_id is not None and judge.organisation_id in pair.owners


def assign(
    pairs: Sequence[PairToJudge],
    judges: Sequence[Judge],
    *,
    judges_per_pair: int,
    affinity: Mapping[tuple[int, int], float] | None = None,
) -> dict[int, list[int]]:
    """pair id → the judge ids assigned to it (judges_per_pair each, no conflict, no judge over their load).

    Raises InvalidInput naming the pairs left short when the judges' capacity cannot cover every pair.
    """
    if judges_per_pair < 1:
        raise InvalidInput("judges_per_pair must be at least 1", field="judges_per_pair")
    if not pairs:
        return {}
    affinity = affinity or {}
    graph = nx.DiGraph()
    for pair in pairs:
        graph.add_edge("source", ("pair", pair.id), capacity=judges_per_pair, weight=0)
        for judge in judges:
            if conflicted(judge, pair) or judge.max_load <= 0:
                continue
            closeness = min(1.0, max(0.0, float(affinity.get((pair.id, judge.id), 0.0))))
            cost = int(round((1.0 - closeness) * _COST_SCALE))
            graph.add_edge(("pair", pair.id), ("judge", judge.id), capacity=1, weight=cost)
    for judge in judges:
        if judge.max_load > 0:
            graph.add_edge(("judge", judge.id), "sink", capacity=judge.max_load, weight=0)
    graph.add_node("sink")  # even when no expert can take anything: the flow is then 0 and the error says why
    flow = nx.max_flow_min_cost(graph, "source", "sink")
    out: dict[int, list[int]] = {}
    short = []
    for pair in pairs:
        chosen = sorted(j for (kind, j), f in flow[("pair", pair.id)].items() if kind == "judge" and f > 0)
        out[pair.id] = chosen
        if len(chosen) < judges_per_pair:
            short.append(pair.id)
    if short:
        eligible = {p.id: sum(1 for j in judges if not conflicted(j, p) and j.max_load > 0) for p in pairs}
        few = [p for p in short if eligible[p] < judges_per_pair]
        reason = (
            f"pairs {few[:10]} have fewer than {judges_per_pair} experts without a conflict of interest"
            if few
            else f"the experts' load limits ({sum(j.max_load for j in judges)} items in all) cannot cover "
            f"{len(pairs)} pairs × {judges_per_pair} judges"
        )
        raise InvalidInput(
            f"cannot assign every pair {judges_per_pair} experts: {len(short)} pairs left short; {reason}",
            field="judges_per_pair",
            extra={"short_pairs": short[:100]},
        )
    return out
