"""The incremental sentence splitter: verbatim concatenation, chunking-independence, tricky cases."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio_pipeline.sentences import CLOSERS, STRONG, SentenceSplitter, speakable, split_stream

ALPHABET = st.sampled_from(
    list("abcXYZ 19")
    + list(".?!…,;:¿¡\"'”»()[]*#-_\n\t")
    + ["Sr", "e.g", "3.14", "😊", "ñ", "...", "Dr"]
)


def run(deltas: list[str], max_chars: int = 40) -> list[str]:
    splitter = SentenceSplitter(max_chars=max_chars)
    out: list[str] = []
    for delta in deltas:
        out += splitter.feed(delta)
    return out + splitter.flush()


def cut(text: str, points: list[int]) -> list[str]:
    bounds = sorted({p % (len(text) + 1) for p in points} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=80).map("".join), st.lists(st.integers(0, 10_000), max_size=30))
def test_concatenation_is_verbatim_and_independent_of_chunking(
    text: str, points: list[int]
) -> None:
    whole = run([text])
    assert "".join(whole) == text
    assert run(cut(text, points)) == whole
    assert run(list(text)) == whole
    assert all(whole), "no empty sentences"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_unicode_text_round_trips(text: str, points: list[int]) -> None:
    whole = run([text], max_chars=25)
    assert "".join(whole) == text
    assert run(cut(text, points), max_chars=25) == whole
    assert all(whole)


@given(st.text(min_size=1, max_size=400))
def test_no_sentence_runs_past_the_limit_without_a_cut(text: str) -> None:
    # Forced cuts keep every sentence within the limit, except where a pending "." or
    # closing quote decided a boundary a few characters later.
    for sentence in run([text], max_chars=30):
        assert len(sentence) <= 30 or sentence.rstrip()[-1:] in "." + STRONG + CLOSERS


def sentences_of(text: str) -> list[str]:
    return [s.strip() for s in run(list(text), max_chars=200)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hola. ¿Qué tal? ¡Muy bien!", ["Hola.", "¿Qué tal?", "¡Muy bien!"]),
        (
            "El Sr. García y la Sra. Pérez llegaron a las 3.14 de la tarde. Luego se fueron.",
            ["El Sr. García y la Sra. Pérez llegaron a las 3.14 de la tarde.", "Luego se fueron."],
        ),
        ("La Dra. Ruiz, etc. Todo bien.", ["La Dra. Ruiz, etc.", "Todo bien."]),
        (
            "Mr. and Mrs. Smith saw Dr. Who. He waved.",
            ["Mr. and Mrs. Smith saw Dr. Who.", "He waved."],
        ),
        (
            "Use tools, e.g. a hammer, i.e. a tool. Then rest.",
            ["Use tools, e.g. a hammer, i.e. a tool.", "Then rest."],
        ),
        ("Pi is 3.14159 exactly. Not really.", ["Pi is 3.14159 exactly.", "Not really."]),
        ("Bueno... no sé. Quizás... Sí.", ["Bueno... no sé.", "Quizás...", "Sí."]),
        ('Dijo "hola." Y se fue.', ['Dijo "hola."', "Y se fue."]),
        ('Ella preguntó: "¿Vienes?" Y esperó.', ['Ella preguntó: "¿Vienes?"', "Y esperó."]),
        ("(Es broma.) Ya está.", ["(Es broma.)", "Ya está."]),
        # A quoted sentence end followed by a lowercase word goes on (issue 14.6).
        ("«¿De verdad?» dijo.", ["«¿De verdad?» dijo."]),
        (
            'She said "Stop right there." before leaving.',
            ['She said "Stop right there." before leaving.'],
        ),
        ('She asked "Why?" He shrugged.', ['She asked "Why?"', "He shrugged."]),
        ("(See the map.) then turn left.", ["(See the map.) then turn left."]),
        ("¡Genial! 🎉 Vamos.", ["¡Genial!", "🎉 Vamos."]),
        ("**Hola.** Adiós.", ["**Hola.**", "Adiós."]),
        (
            "# Título\n- uno\n- dos\n1. Primero\n2. Segundo",
            ["# Título", "- uno", "- dos", "1. Primero", "2. Segundo"],
        ),
        ("Visit voz.ai today. Thanks.", ["Visit voz.ai today.", "Thanks."]),
    ],
)
def test_tricky_cases(text: str, expected: list[str]) -> None:
    assert sentences_of(text) == expected


def test_question_and_exclamation_come_out_without_waiting_for_the_next_token() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("¿Qué") == []
    assert splitter.feed(" tal?") == ["¿Qué tal?"]
    assert splitter.feed(" ¡Bien!") == [" ¡Bien!"]


def test_a_full_stop_needs_one_more_character_and_flush_releases_the_last() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hola.") == []
    assert splitter.feed(" Soy") == ["Hola."]
    assert splitter.feed(" Ana.") == []
    assert splitter.flush() == [" Soy Ana."]
    assert splitter.flush() == []


def test_title_abbreviation_never_ends_a_sentence() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hablé con el Sr. ") == []
    assert splitter.feed("López. Vale") == ["Hablé con el Sr. López."]


def test_run_on_clause_is_cut_at_a_comma_then_at_a_space() -> None:
    text = "uno dos tres cuatro, cinco seis siete ocho nueve diez once doce trece catorce"
    parts = run([text], max_chars=30)
    assert parts[0] == "uno dos tres cuatro,"
    assert all(len(p) <= 30 for p in parts)
    assert "".join(parts) == text
    no_commas = run(["palabra " * 10], max_chars=20)
    assert no_commas[0] == "palabra palabra"


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("**Hola**, _amigo_.", "Hola, amigo."),
        ("\n- uno", "uno"),
        ("# Título", "Título"),
        ("!", ""),
        ('" ¿Y tú?', "¿Y tú?"),
        ("See [the docs](https://x.y/z) now.", "See the docs now."),
        ("snake_case stays", "snake_case stays"),
        ("`code` here", "code here"),
    ],
)
def test_speakable(raw: str, spoken: str) -> None:
    assert speakable(raw) == spoken


async def test_split_stream_is_an_async_stage() -> None:
    async def deltas():
        for delta in ["Hi", " there", ". How", " are", " you?", " Bye"]:
            yield delta

    assert [s async for s in split_stream(deltas())] == ["Hi there.", " How are you?", " Bye"]
