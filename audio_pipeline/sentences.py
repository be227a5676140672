"""Cut streamed LLM text into speakable sentences as early as it is certain where they end.

`SentenceSplitter.feed(delta)` returns the sentences completed so far and `flush()` the rest, so
`"".join(all of them) == text` whatever the deltas were, and the cut never depends on how the text
arrived: a boundary is emitted only once the text after it cannot change the decision.

- `?`, `!`, `…` end a sentence at once (no wait for the next token), unless a quote or bracket is
  open, when closing quotes/brackets after them are kept with the sentence. A sentence end inside
  quotes or brackets is no boundary when a lowercase word or `,;:` follows the closing mark
  (`She said "Stop right there." before leaving.` is one piece).
- `.` needs one more character: `3.14`, `voz.ai`, ellipses and closing quotes stay inside.
  Titles (Sr., Dra., Mr., Dr., …) never end a sentence; other abbreviations and initials (etc.,
  e.g., i.e., J.) end one only when the next word starts with a capital, `¿`, `¡` or a digit.
- A newline ends a sentence (markdown lists and headings); a segment without any letter or digit
  (a stray `!`, `**`, an emoji) is kept and spoken with the next one.
- A clause longer than SENTENCE_MAX_CHARS is cut at its last `,;:` or, failing that, its last space.
Whitespace between sentences starts the next one. `speakable()` cleans a sentence for TTS.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from django.conf import settings

STRONG = "?!…。\uff1f\uff01"  # with the full-width question and exclamation marks
CLOSERS = "\"'”\u2019»)]}*_`"  # \u2019: right single quote
OPEN_CLOSE = {"(": ")", "[": "]", "{": "}", "“": "”", "«": "»"}
STARTERS = '¿¡"“«('
TITLES = {
    "sr", "sra", "srta", "sres", "sras", "dr", "dra", "drs", "mr", "mrs", "ms", "mx", "prof",
    "profa", "st", "sto", "sta", "ud", "uds", "vd", "vds", "lic", "ing", "dña", "gen", "col",
    "capt", "sgt", "rev", "hon", "fr", "pres", "gob", "arq",
}  # fmt: skip
ABBREVIATIONS = {
    "etc", "e.g", "i.e", "vs", "approx", "aprox", "p.ej", "ej", "pág", "págs", "núm", "fig",
    "cf", "a.m", "p.m", "a.c", "d.c", "inc", "ltd", "co", "corp", "dept", "est", "min", "máx",
    "mín", "jr",
}  # fmt: skip
_NEED_MORE = -1


def _has_word(segment: str) -> bool:
    return any(ch.isalnum() for ch in segment)


def _quote_open(segment: str) -> bool:
    if segment.count('"') % 2:
        return True
    return any(segment.count(o) > segment.count(c) for o, c in OPEN_CLOSE.items())


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _token_before(text: str, dot: int) -> str:
    begin = dot
    while begin > 0 and (text[begin - 1].isalnum() or text[begin - 1] == "."):
        begin -= 1
    return text[begin:dot].lower()


def _dot(text: str, dot: int, final: bool) -> int | None:
    """Boundary after the `.` at `dot`; None: not a boundary; _NEED_MORE: cannot tell yet."""
    n = len(text)
    end = _skip(text, dot, ".")
    ellipsis = end - dot >= 2
    if end >= n:
        return n if final else _NEED_MORE
    if not ellipsis and text[end].isalnum():
        return None  # 3.14, voz.ai, e.g
    after = _skip(text, end, CLOSERS)
    if after >= n:
        return n if final else _NEED_MORE
    if not text[after].isspace():
        return after if text[after] in "¿¡" or text[after].isupper() else None
    if after > end and _quote_open(text[:dot]):
        return _after_quote(text, after, final)
    token = _token_before(text, dot)
    if not ellipsis and token in TITLES:
        return None
    before = text[: dot - len(token)]
    list_number = token.isdigit() and not _has_word(before.rsplit("\n", 1)[-1])
    if list_number:
        return None
    ambiguous = ellipsis or token in ABBREVIATIONS or "." in token or len(token) == 1
    if not ambiguous:
        return after
    following = _skip_space(text, after)
    if following >= n:
        return n if final else _NEED_MORE
    if "\n" in text[after:following]:
        return after
    head = text[following]
    return after if head.isupper() or head.isdigit() or head in STARTERS else None


def _after_quote(text: str, end: int, final: bool) -> int | None:
    """Boundary at `end`, after a sentence end inside quotes or brackets (`"Stop!"`), unless the
    sentence goes on after them: `She said "Stop." before leaving.` is one spoken piece."""
    following = _skip_space(text, end)
    if following >= len(text):
        return end if final else _NEED_MORE
    head = text[following]
    return None if head.islower() or head in ",;:" else end


def _forced_cut(text: str, max_chars: int) -> int:
    window = text[:max_chars]
    for index in range(len(window) - 2, max_chars // 4 - 1, -1):
        if window[index] in ",;:" and window[index + 1].isspace():
            return index + 1
    for index in range(len(window) - 1, 0, -1):
        if window[index].isspace() and _has_word(window[:index]):
            return index
    return max_chars


def next_boundary(text: str, *, final: bool, max_chars: int) -> int | None:
    """Length of the first sentence of `text`, or None when more text is needed to tell."""
    n = len(text)
    for i, ch in enumerate(text):
        if i >= max_chars:
            return _forced_cut(text, max_chars)
        if ch == "\n":
            if _has_word(text[:i]):
                return i
        elif ch in STRONG:
            if _has_word(text[:i]):
                if not _quote_open(text[:i]):
                    return i + 1
                end = _skip(text, i + 1, STRONG + "." + CLOSERS)
                decision = _after_quote(text, end, final)
                if decision == _NEED_MORE:
                    return None
                if decision is not None:
                    return decision
        elif ch == "." and _has_word(text[:i]):
            decision = _dot(text, i, final)
            if decision == _NEED_MORE:
                return None
            if decision is not None:
                return decision
    return n if final and n else None


class SentenceSplitter:
    """Feed token deltas, get sentences as soon as they are certain; `flush()` at the end."""

    def __init__(self, max_chars: int | None = None) -> None:
        self.max_chars = max_chars or settings.SENTENCE_MAX_CHARS
        self._buffer = ""

    @property
    def pending(self) -> str:
        return self._buffer

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> list[str]:
        out = []
        while self._buffer:
            cut = next_boundary(self._buffer, final=final, max_chars=self.max_chars)
            if cut is None:
                break
            out.append(self._buffer[:cut])
            self._buffer = self._buffer[cut:]
        return out


async def split_stream(deltas: AsyncIterator[str], max_chars: int | None = None):
    """Async stage: token deltas in, sentences out (the last one at the end of the stream)."""
    splitter = SentenceSplitter(max_chars)
    async for delta in deltas:
        for sentence in splitter.feed(delta):
            yield sentence
    for sentence in splitter.flush():
        yield sentence


_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MD_LINE_PREFIX = re.compile(r"(?m)^\s*(#{1,6}\s+|[-*+•]\s+|>\s*)")
_MD_MARKS = re.compile(r"(\*\*|__|\*|`+|~~)|(?<!\w)_|_(?!\w)")
_LEADING_JUNK = re.compile("^[\\s\"'”\u2019»)\\]}.,;:!?…]+")


def speakable(text: str) -> str:
    """What TTS should say for a sentence: markdown marks and stray punctuation removed."""
    cleaned = _MD_LINK.sub(r"\1", text)
    cleaned = _MD_LINE_PREFIX.sub("", cleaned)
    cleaned = _MD_MARKS.sub("", cleaned)
    cleaned = _LEADING_JUNK.sub("", cleaned)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    return cleaned if _has_word(cleaned) else ""


# The first chunk of a reply: a clause is enough -------------------------------------------

CLAUSE_MARKS = ",;:—–"  # and a spaced hyphen " - "
_WORD = re.compile(r"[^\W_]+")


def first_clause_boundary(text: str, *, min_words: int, max_chars: int) -> int | None:
    """Length of a first chunk that ends at a clause mark once it holds `min_words` words.

    None when no such clause is certain yet, or a sentence ends first (then the sentence rules
    apply). A `,`/`:`/`;` needs a space after it (`1,000`, `10:30` stay whole); dashes do not.
    The decision depends only on the text up to the cut, so it does not depend on the deltas.
    """
    for index, char in enumerate(text):
        if index >= max_chars:
            return None
        dash = char in "—–" or (char == "-" and text[index - 1 : index] == " ")
        if char not in CLAUSE_MARKS and not dash:
            continue
        if not dash or char == "-":
            if index + 1 >= len(text):
                return None  # the next character decides
            if not text[index + 1].isspace():
                continue
        head = text[:index]
        if len(_WORD.findall(head)) < min_words or _quote_open(head):
            continue
        cut = index + 1
        if next_boundary(text[:cut], final=False, max_chars=max_chars) is not None:
            return None  # a whole sentence ends before this clause
        return cut
    return None


class ReplySplitter(SentenceSplitter):
    """A `SentenceSplitter` whose first chunk may end at a clause, so speech starts sooner.

    Once the first chunk holds `first_clause_words` words (SENTENCE_FIRST_CLAUSE_WORDS; 0 turns
    this off) it may end after `,` `;` `:` or a dash; every later chunk is a sentence.
    """

    def __init__(self, max_chars: int | None = None, first_clause_words: int | None = None) -> None:
        super().__init__(max_chars)
        words = settings.SENTENCE_FIRST_CLAUSE_WORDS
        self.first_clause_words = words if first_clause_words is None else first_clause_words
        self._started = False

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        if not self._started and self.first_clause_words > 0 and self._buffer:
            cut = first_clause_boundary(
                self._buffer, min_words=self.first_clause_words, max_chars=self.max_chars
            )
            if cut is not None:
                out.append(self._buffer[:cut])
                self._buffer = self._buffer[cut:]
        out += super()._drain(final=final)
        self._started = self._started or bool(out)
        return out
