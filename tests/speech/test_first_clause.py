"""A reply's first spoken chunk may end at a clause; later chunks are sentences."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio_pipeline.sentences import ReplySplitter, SentenceSplitter, first_clause_boundary

ALPHABET = st.sampled_from(
    list("abcXYZ 19")
    + list(".?!…,;:—–-¿¡\"'”»()\n")
    + [" word", " two words", "Sr", "e.g", "3.14", "1,000", "10:30", " - ", "ñ", "..."]
)


def run(deltas: list[str], *, words: int = 3, max_chars: int = 60) -> list[str]:
    splitter = ReplySplitter(max_chars=max_chars, first_clause_words=words)
    out: list[str] = []
    for delta in deltas:
        out += splitter.feed(delta)
    return out + splitter.flush()


def sentences_only(text: str, max_chars: int = 60) -> list[str]:
    splitter = SentenceSplitter(max_chars=max_chars)
    return splitter.feed(text) + splitter.flush()


def cut(text: str, points: list[int]) -> list[str]:
    bounds = sorted({p % (len(text) + 1) for p in points} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize(
    ("text", "first"),
    [
        (
            "Well, I think that we could go, if you like. Then more.",
            "Well, I think that we could go,",
        ),
        ("Sure thing, my friend: tea is ready. Yes.", "Sure thing, my friend:"),
        ("Claro que sí, amiga mía, vamos a la playa.", "Claro que sí, amiga mía,"),
        ("The plan is simple — we leave at dawn. Good?", "The plan is simple —"),
        ("The plan is simple - we leave at dawn.", "The plan is simple -"),
        ("We sold 1,000 cups at 10:30 today, more later.", "We sold 1,000 cups at 10:30 today,"),
    ],
)
def test_first_chunk_ends_at_the_first_clause_with_enough_words(text: str, first: str) -> None:
    chunks = run([text], words=4)
    assert chunks[0] == first
    assert "".join(chunks) == text
    assert chunks[1:] == sentences_only(text[len(first) :]), "later chunks are whole sentences"


def test_short_clauses_and_sentences_keep_the_sentence_rules() -> None:
    assert run(["Yes, sure. And then, after all that waiting, we went home."], words=4) == [
        "Yes, sure.",
        " And then, after all that waiting, we went home.",
    ]
    assert run(["Hi! Well, you know what, I agree."], words=4) == [
        "Hi!",
        " Well, you know what, I agree.",
    ]


def test_quoted_clause_and_off_switch() -> None:
    assert run(['He said "one, two, three, four" and left, happily.'], words=3)[0] == (
        'He said "one, two, three, four" and left,'
    )
    text = "Well, I think that we could go, if you like."
    assert run([text], words=0) == sentences_only(text)


def test_a_comma_at_the_end_waits_for_the_next_character() -> None:
    splitter = ReplySplitter(max_chars=200, first_clause_words=2)
    assert splitter.feed("We sold 1,") == []
    assert splitter.feed("000 cups, then") == ["We sold 1,000 cups,"]
    assert first_clause_boundary("one two three,", min_words=2, max_chars=200) is None


@settings(max_examples=400, deadline=None)
@given(
    st.lists(ALPHABET, max_size=60).map("".join),
    st.lists(st.integers(0, 10_000), max_size=30),
    st.integers(0, 5),
)
def test_verbatim_and_independent_of_how_the_text_arrived(
    text: str, points: list[int], words: int
) -> None:
    whole = run([text], words=words)
    assert "".join(whole) == text
    assert run(cut(text, points), words=words) == whole
    if len(whole) > 1:  # after the first chunk, exactly the sentence splitter's cuts
        rest = text[len(whole[0]) :]
        assert whole[1:] == sentences_only(rest)
