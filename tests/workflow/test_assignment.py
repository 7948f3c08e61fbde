"""Assignment over random instances: never a conflict, never an overload, every pair covered whenever a flow allows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from core.errors import InvalidInput
from workflow.review.assignment import Judge, PairToJudge, assign, conflicted


@st.composite
def instances(draw: st.DrawFn) -> tuple[list[PairToJudge], list[Judge], int, dict[tuple[int, int], float]]:
    orgs = list(range(1, draw(st.integers(1, 6)) + 1))
    judges = [
        Judge(id=100 + i, organisation_id=draw(st.sampled_from([None, *orgs])), max_load=draw(st.integers(0, 12)))
        for i in range(draw(st.integers(1, 8)))
    ]
    pairs = [
        PairToJudge(id=i, owners=frozenset(draw(st.lists(st.sampled_from(orgs), min_size=0, max_size=2))))
        for i in range(draw(st.integers(0, 30)))
    ]
    per_pair = draw(st.integers(1, 3))
    affinity = {(p.id, j.id): draw(st.floats(0, 1)) for p in pairs for j in judges if draw(st.booleans())}
    return pairs, judges, per_pair, affinity


def independent_max_flow(pairs: list[PairToJudge], judges: list[Judge], per_pair: int) -> int:
    """The maximum flow of the same network by another implementation (scipy's), for the feasibility oracle."""
    n = 2 + len(pairs) + len(judges)
    cap = np.zeros((n, n), dtype=np.int32)
    for i, p in enumerate(pairs):
        cap[0, 2 + i] = per_pair
        for k, j in enumerate(judges):
            if not conflicted(j, p):
                cap[2 + i, 2 + len(pairs) + k] = 1
    for k, j in enumerate(judges):
        cap[2 + len(pairs) + k, 1] = j.max_load
    return int(maximum_flow(csr_matrix(cap), 0, 1).flow_value)


@settings(max_examples=300, deadline=None)
@given(instances())
def test_assignments_are_conflict_free_within_load_and_complete_when_possible(case: tuple) -> None:
    pairs, judges, per_pair, affinity = case
    possible = independent_max_flow(pairs, judges, per_pair) == len(pairs) * per_pair
    try:
        got = assign(pairs, judges, judges_per_pair=per_pair, affinity=affinity)
    except InvalidInput as exc:
        assert not possible, f"a complete assignment exists but assign refused: {exc.detail}"
        assert "left short" in exc.detail and exc.extra["short_pairs"]
        return
    assert possible
    by_id = {j.id: j for j in judges}
    load: dict[int, int] = {}
    for pair in pairs:
        chosen = got[pair.id]
        assert len(chosen) == per_pair == len(set(chosen))
        for judge_id in chosen:
            assert not conflicted(by_id[judge_id], pair)
            load[judge_id] = load.get(judge_id, 0) + 1
    assert all(load[j] <= by_id[j].max_load for j in load)


def test_affinity_decides_between_free_experts() -> None:
    pairs = [PairToJudge(1, frozenset()), PairToJudge(2, frozenset())]
    judges = [Judge(10, None, 1), Judge(11, None, 1)]
    got = assign(pairs, judges, judges_per_pair=1, affinity={(1, 11): 0.9, (2, 10): 0.8, (1, 10): 0.1, (2, 11): 0.2})
    assert got == {1: [11], 2: [10]}


def test_a_conflicted_expert_is_never_chosen_and_the_error_names_the_pair() -> None:
    pairs = [PairToJudge(7, frozenset({3}))]
    judges = [Judge(10, 3, 5), Judge(11, None, 5)]
    with pytest.raises(InvalidInput, match=r"pairs \[7\] have fewer than 2 experts without a conflict"):
        assign(pairs, judges, judges_per_pair=2)
    assert assign(pairs, judges, judges_per_pair=1) == {7: [11]}
