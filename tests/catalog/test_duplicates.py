"""Duplicate collapse: the packed trigram codes are exactly the set of character trigrams, so the Jaccard test on
them decides as the definition on strings does."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.match import DUPLICATE_SIMILARITY, _same_text, _trigrams
from models.tables import Achievement, Need

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


@settings(max_examples=400, deadline=None)
@given(texts, texts, texts, texts)
def test_codes_decide_as_trigram_strings_do(title_a: str, body_a: str, title_b: str, body_b: str) -> None:
    a = _trigrams(Achievement(title=title_a, abstract=body_a))
    b = _trigrams(Need(title=title_b, description=body_b))
    ref_a, ref_b = _reference(title_a, body_a), _reference(title_b, body_b)
    assert len(a) == len(ref_a) and len(b) == len(ref_b)
    assert _same_text(a, b) == _same_reference(ref_a, ref_b)
    assert _same_text(a, a)


@settings(max_examples=200, deadline=None)
@given(texts, st.integers(min_value=0, max_value=5), texts)
def test_a_near_copy_is_judged_on_its_overlap(text: str, cut: int, extra: str) -> None:
    # A text against itself with a few characters cut or added: the cases near the threshold.
    a = _trigrams(Achievement(title=text, abstract=""))
    b = _trigrams(Achievement(title=text[cut:] + extra, abstract=""))
    assert _same_text(a, b) == _same_reference(_reference(text, ""), _reference(text[cut:] + extra, ""))


def test_short_texts_are_equal_only_when_identical() -> None:
    def codes(t: str) -> object:
        return _trigrams(Achievement(title=t, abstract=""))

    assert _same_text(codes("ab"), codes("A B"))  # case and spaces fold away
    assert not _same_text(codes("ab"), codes("abc"))
    assert not _same_text(codes("a"), codes("ab"))
    assert _same_text(codes(""), codes("，。"))
