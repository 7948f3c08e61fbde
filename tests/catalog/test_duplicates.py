"""Duplicate collapse: the packed trigram codes are exactly the set of character trigrams, so the batched Jaccard
test on them decides every pair as the definition on strings does."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.match import DUPLICATE_SIMILARITY, _near_duplicates

_NOT_WORD = re.compile(r"[\W_]+")
# Han, kana, Latin, digits, full-width forms, punctuation, spaces and characters beyond the BMP (4-byte code points).
ALPHABET = st.sampled_from(
    list("锂电池安全防护海参养殖水质监测的了ABCabc123１２Ａ，。、；：！？ -_\t") + ["𠀀", "😀", "𝔘"]
)


def _reference(title: str, body: str) -> frozenset[str]:
    """The definition: trigram strings of the case-folded text without non-word characters; a shorter text is one
    element of its own."""
    text = _NOT_WORD.sub("", f"{title}{body}".lower())
    if len(text) < 3:
        return frozenset((text,))
    return frozenset(text[i : i + 3] for i in range(len(text) - 2))


def _same_reference(a: frozenset[str], b: frozenset[str]) -> bool:
    shared = len(a & b)
    return shared >= DUPLICATE_SIMILARITY * (len(a) + len(b) - shared)


texts = st.text(alphabet=ALPHABET, max_size=40)


def _decided(texts: list[str], refs: list[frozenset[str]]) -> None:
    same = _near_duplicates(texts)
    assert same.shape == (len(texts), len(texts))
    for i, a in enumerate(refs):
        for j, b in enumerate(refs):
            assert same[i, j] == _same_reference(a, b), (i, j)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(texts, texts), max_size=6))
def test_codes_decide_as_trigram_strings_do(parts: list[tuple[str, str]]) -> None:
    _decided([title + body for title, body in parts], [_reference(title, body) for title, body in parts])


@settings(max_examples=200, deadline=None)
@given(texts, st.lists(st.tuples(st.integers(min_value=0, max_value=5), texts), min_size=1, max_size=4))
def test_near_copies_are_judged_on_their_overlap(text: str, edits: list[tuple[int, str]]) -> None:
    # A text beside copies with a few characters cut or added: the cases near the threshold.
    copies = [text] + [text[cut:] + extra for cut, extra in edits]
    _decided(copies, [_reference(t, "") for t in copies])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="ab锂 ", max_size=30), max_size=5))
def test_repeated_trigrams_count_once(copies: list[str]) -> None:
    # A tiny alphabet repeats trigrams within a text: a set counts each once.
    _decided(copies, [_reference(t, "") for t in copies])


def test_a_repeated_text_is_the_same_text() -> None:
    same = _near_duplicates(["锂电锂电锂电锂电", "锂电锂电"])
    assert same[0, 1]  # the same two trigrams, however often each occurs


def test_short_texts_are_equal_only_when_identical() -> None:
    texts = ["ab", "A B", "abc", "a", "", "，。"]
    same = _near_duplicates(texts)
    assert same[0, 1]  # case and spaces fold away
    assert not same[0, 2] and not same[3, 0]
    assert same[4, 5]
    assert same.diagonal().all()


def test_no_rows() -> None:
    assert _near_duplicates([]).shape == (0, 0)


def test_word_points_are_what_the_definition_keeps() -> None:
    """The code-point table drops exactly what `[\\W_]` drops: every BMP point, and a spread of points beyond it."""
    import numpy as np

    from catalog.match import _is_word

    points = np.concatenate((np.arange(0x10000), np.arange(0x10000, 0x110000, 97), [0x20000, 0x1F600, 0x1D518]))
    expected = np.array([_NOT_WORD.fullmatch(chr(int(c))) is None for c in points])
    assert (_is_word(points.astype(np.uint32)) == expected).all()
