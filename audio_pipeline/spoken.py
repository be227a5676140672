"""What TTS says for a text: what a person would read aloud.

Engines read symbols by their Unicode names (espeak-ng says "grinning face" for 😀, edge voices
say "check mark"), which nobody reading a reply aloud would do. `spoken_text(text, language)`:

- removes emoji and pictographs (with their skin-tone modifiers, variation selectors, joiners and
  keycaps), other symbols and private-use characters;
- says the symbols people do read: `50%` → "50 percent" / "50 por ciento", `$5` / `5 €` →
  "5 dollars" / "5 euros", `&` → "and" / "y", `+`, `=`, `×`, `°C`, `#3` → "number 3";
- tidies the spaces a removed symbol leaves (`Great job! 😀 See you.` → `Great job! See you.`).

English and Spanish have words; other languages get the removals only (their engines read digits
and punctuation themselves).

`tamed(text, repeats=, word_chars=)` cuts what no reader says and what crashes espeak-ng's
phonemizer (issue 21: "s's's'…" overflows its stack): a run of the same 1-4 characters
repeated more than `repeats` times, a "word" longer than `word_chars`.
"""

from __future__ import annotations

import re
import unicodedata

_WORDS = {
    "en": {
        "percent": "percent", "and": "and", "plus": "plus", "equals": "equals", "times": "times",
        "degrees": "degrees", "celsius": "degrees Celsius", "fahrenheit": "degrees Fahrenheit",
        "number": "number", "$": "dollars", "€": "euros", "£": "pounds", "¥": "yen",
    },
    "es": {
        "percent": "por ciento", "and": "y", "plus": "más", "equals": "igual a", "times": "por",
        "degrees": "grados", "celsius": "grados Celsius", "fahrenheit": "grados Fahrenheit",
        "number": "número", "$": "dólares", "€": "euros", "£": "libras", "¥": "yenes",
    },
}  # fmt: skip

# Invisible parts of emoji sequences: variation selectors, joiners, keycap, tags.
_EMOJI_PARTS = {0xFE0E, 0xFE0F, 0x200D, 0x20E3} | set(range(0xE0020, 0xE0080))
_DROP_CATEGORIES = {"So", "Sk", "Co", "Cn", "Cs"}
_KEEP_SYMBOLS = set("%&+=×°#$€£¥")  # Verbalised below, if a language has words for them.

_NUMBER = r"\d+(?:[.,]\d+)*"
_CURRENCY_BEFORE = re.compile(rf"([$€£¥])\s?({_NUMBER})")
_CURRENCY_AFTER = re.compile(rf"({_NUMBER})\s?([$€£¥])")
_PERCENT = re.compile(rf"({_NUMBER})\s?%")
_DEGREES = re.compile(rf"({_NUMBER})\s?°(?:\s?([CF])\b)?")
_NUMBER_SIGN = re.compile(r"#\s?(\d)")
_BETWEEN_NUMBERS = re.compile(rf"({_NUMBER})\s?([+=×])\s?(?={_NUMBER})")
_AMPERSAND = re.compile(r"\s?&\s?")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?…)\]}»”])")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"\S+")


def _language(language: str) -> dict[str, str] | None:
    return _WORDS.get(language.lower().split("-")[0])


def _drop(ch: str) -> bool:
    if ord(ch) in _EMOJI_PARTS:
        return True
    category = unicodedata.category(ch)
    if category in _DROP_CATEGORIES or (category == "Sm" and ch not in _KEEP_SYMBOLS):
        return True
    return 0x1F3FB <= ord(ch) <= 0x1F3FF  # Skin-tone modifiers (Sk, listed for clarity).


def verbalise(text: str, words: dict[str, str]) -> str:
    """Symbols a reader says, in words."""
    text = _CURRENCY_BEFORE.sub(lambda m: f"{m[2]} {words[m[1]]}", text)
    text = _CURRENCY_AFTER.sub(lambda m: f"{m[1]} {words[m[2]]}", text)
    text = _PERCENT.sub(lambda m: f"{m[1]} {words['percent']}", text)
    text = _DEGREES.sub(
        lambda m: (
            f"{m[1]} " + words[{"C": "celsius", "F": "fahrenheit"}.get(m[2] or "", "degrees")]
        ),
        text,
    )
    text = _NUMBER_SIGN.sub(lambda m: f"{words['number']} {m[1]}", text)
    operators = {"+": "plus", "=": "equals", "×": "times"}
    text = _BETWEEN_NUMBERS.sub(lambda m: f"{m[1]} {words[operators[m[2]]]} ", text)
    return _AMPERSAND.sub(f" {words['and']} ", text)


def spoken_text(text: str, language: str = "en") -> str:
    """`text` as a person would read it aloud (see the module docstring); may be empty."""
    text = unicodedata.normalize("NFC", text)
    words = _language(language)
    if words is not None:
        text = verbalise(text, words)
    text = "".join(" " if _drop(ch) else ch for ch in text)
    if words is not None:
        text = "".join(" " if ch in _KEEP_SYMBOLS else ch for ch in text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()


def tamed(text: str, *, repeats: int, word_chars: int) -> str:
    """`text` with runs of a repeated unit (1-4 characters, not digits: "1000000" stays) cut to
    `repeats` units ("hahahahaha" → "hahaha" at 3) and words longer than `word_chars` split
    into pieces of that many characters; 0 turns either off."""
    if repeats > 0:
        run = re.compile(rf"([^\d\s]{{1,4}}?)\1{{{repeats},}}")
        text = run.sub(lambda m: m[1] * repeats, text)
    if word_chars > 0:
        text = _WORD.sub(
            lambda m: " ".join(m[0][i : i + word_chars] for i in range(0, len(m[0]), word_chars)),
            text,
        )
    return text
