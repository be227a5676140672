"""Rules that judge a character's spoken reply, for bench/bench_local_model.py.

Each rule takes the reply and its `Case` and returns True (pass) or False. They are written down
in docs/conversation.md ("The offline model"); keep the two in step. The rules are deliberately
simple and mechanical so that two runs judge alike:

- language:  scores each language by its common function words found (Spanish also gets one point
             for its own marks: ñ, accents, ¿ ¡); the expected language needs at least 1 point
             and more than the other. Nonsense such as "Allegedo allegedo." scores 0 and fails.
- labels:    no role label ("User:", "Assistant:", "Usuario:", the character's own name + ":")
             and no chat-template tokens ("<|im_start|>").
- length:    2 to 60 words (one to three spoken sentences) and not cut by the token cap.
- character: never says it is an AI, an assistant or a model, never names the instructions or
             recites them (8 or more words in a row copied from the system prompt), and when the
             question asks for a fact from the description or memory, says it.
- spoken:    no markdown, list markers or emoji (the reply is spoken aloud).
- coherent:  no word twice in a row and no three-word sequence said twice (loops).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

_EN = "the and you your to of is in it that i i'm my we for on with are this be what have can \
was will do not but so just it's there here how about am an at as if or from by would could \
don't let's she they our their"
_ES = "el la los las que en y del por con una un su para es al lo como más pero sus le ya muy \
mi tu te estoy soy eres qué está hola cariño pues también yo porque cuando hay se mis tus nos \
son bien sí aquí cómo hoy puedo"
SPANISH_MARKS = re.compile("[ñáéíóúü¿¡]", re.IGNORECASE)
FUNCTION_WORDS = {"en": frozenset(_EN.split()), "es": frozenset(_ES.split())}
LABEL = re.compile(
    r"(?im)(^|[\s\"'¿¡(])(user|assistant|system|human|ai|bot|usuario|asistente|sistema)\s*:"
    r"|<\||\|>|\[/?INST\]"
)
PERSONA_BREAK = re.compile(
    r"(?i)\b(as an ai|an ai\b|ai assistant|language model|i am an assistant|i'm an assistant|"
    r"virtual assistant|qwen|alibaba|smollm|hugging ?face|openai|soy una ia|una ia\b|"
    r"inteligencia artificial|modelo de lenguaje|asistente virtual|instructions|instrucciones|"
    r"system prompt|<personality>|<memory>)"
)
MARKUP = re.compile(r"(?m)(\*\*|__|^#+\s|^\s*[-*•]\s|^\s*\d+[.)]\s|`)")
EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


@dataclass(frozen=True)
class Case:
    """One user turn in a fixed conversation with a demo character."""

    instance: str  # "nova" or "rosa" (characters/demo.py)
    language: str  # "en" or "es"
    text: str  # What the user says.
    facts: tuple[str, ...] = ()  # Any one of these must appear (accents and case ignored).
    names: tuple[str, ...] = field(default=())  # The character's names (label check).


def fold(text: str) -> str:
    """Lower case without accents: "Lucía" -> "lucia"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def language_ok(reply: str, case: Case, cut: bool = False, source: str = "") -> bool:
    found = words(reply)
    hits = {lang: sum(w in vocab for w in found) for lang, vocab in FUNCTION_WORDS.items()}
    hits["es"] += bool(SPANISH_MARKS.search(reply))
    other = max(count for lang, count in hits.items() if lang != case.language)
    return hits[case.language] >= 1 and hits[case.language] > other


def labels_ok(reply: str, case: Case, cut: bool = False, source: str = "") -> bool:
    if LABEL.search(reply):
        return False
    own = (re.search(rf"(?im)(^|\s){re.escape(name)}\s*:", reply) for name in case.names)
    return not any(own)


def length_ok(reply: str, case: Case, cut: bool = False, source: str = "") -> bool:
    return 2 <= len(words(reply)) <= 60 and not cut


def character_ok(reply: str, case: Case, cut: bool = False, source: str = "") -> bool:
    if PERSONA_BREAK.search(reply) or recites(reply, source):
        return False
    return not case.facts or any(fold(fact) in fold(reply) for fact in case.facts)


def recites(reply: str, source: str, run: int = 8) -> bool:
    """True when `reply` has `run` or more words in a row taken from `source`."""
    said, given = words(fold(reply)), words(fold(source))
    seen = {tuple(given[i : i + run]) for i in range(len(given) - run + 1)}
    return any(tuple(said[i : i + run]) in seen for i in range(len(said) - run + 1))


def spoken_ok(reply: str, case: Case, cut: bool = False, source: str = "") -> bool:
    return not MARKUP.search(reply) and not EMOJI.search(reply)


def coherent_ok(reply: str, case: Case, cut: bool = False, source: str = "") -> bool:
    found = words(reply)
    if any(a == b for a, b in itertools.pairwise(found)):
        return False
    trigrams = list(zip(found, found[1:], found[2:], strict=False))
    return len(trigrams) == len(set(trigrams))


RULES: dict[str, Callable[[str, Case, bool, str], bool]] = {
    "language": language_ok,
    "labels": labels_ok,
    "length": length_ok,
    "character": character_ok,
    "spoken": spoken_ok,
    "coherent": coherent_ok,
}


def judge(reply: str, case: Case, *, cut: bool = False, source: str = "") -> dict[str, bool]:
    """Every rule's verdict on one reply.

    `cut` is True when the token cap ended the reply; `source` is the system prompt it was
    given (for the recital check).
    """
    return {name: rule(reply, case, cut, source) for name, rule in RULES.items()}
