"""The rules that judge offline replies in bench/bench_local_model.py."""

from __future__ import annotations

from bench.reply_rules import Case, judge

ROSA = Case("rosa", "es", "¿Cómo se llama tu nieta?", ("Lucía",), ("Rosa", "Doña Rosa"))
NOVA = Case("nova", "en", "Who is your first officer?", ("Bolt",), ("Nova", "Captain Nova"))


def failed(reply: str, case: Case, *, cut: bool = False, source: str = "") -> set[str]:
    return {rule for rule, ok in judge(reply, case, cut=cut, source=source).items() if not ok}


def test_a_good_reply_passes_every_rule():
    assert failed("Mi nieta se llama Lucia, cariño. Es la niña de mis ojos.", ROSA) == set()
    assert failed("Bolt is my first officer, a steady robot with a dry wit.", NOVA) == set()


def test_the_reported_spanish_nonsense_fails():
    assert {"language", "coherent", "character"} <= failed("Allegedo allegedo.", ROSA)


def test_the_wrong_language_fails():
    assert "language" in failed("My granddaughter is called Lucía, dear.", ROSA)
    assert "language" in failed("Mi primer oficial es Bolt, un robot.", NOVA)


def test_role_labels_and_template_tokens_fail():
    assert "labels" in failed("Bolt is my officer.\nUser: and you?", NOVA)
    assert "labels" in failed("Captain Nova: Bolt is my first officer.", NOVA)
    assert "labels" in failed("Se llama Lucía.<|im_start|>usuario", ROSA)


def test_short_replies_in_the_right_language_pass():
    assert "language" not in failed("Mi nieta se llama Lucía.", ROSA)
    assert "language" not in failed("I am Bolt.", NOVA)


def test_reciting_the_instructions_fails():
    source = "Doña Rosa es una abuela madrileña cariñosa y con mucho humor. Cocina de maravilla."
    recital = "¡Hola! Soy Doña Rosa, una abuela madrileña cariñosa y con mucho humor, Lucía."
    assert "character" in failed(recital, ROSA, source=source)
    assert "character" not in failed("Soy Doña Rosa, la abuela de Lucía.", ROSA, source=source)


def test_breaking_character_or_missing_the_fact_fails():
    assert "character" in failed("As an AI language model, I have no officer named Bolt.", NOVA)
    assert "character" in failed("My first officer is a fine robot indeed.", NOVA)


def test_length_markup_and_loops():
    assert "length" in failed("Bolt.", NOVA)
    assert "length" in failed("Bolt is my first officer and a good one.", NOVA, cut=True)
    assert "spoken" in failed("**Bolt** is my first officer.", NOVA)
    assert "spoken" in failed("Bolt is my first officer 🚀", NOVA)
    assert "coherent" in failed("Bolt is my officer and Bolt is my officer.", NOVA)
