"""Long texts spoken piece by piece (`POST /api/tts`), like the voice loop speaks a reply.

An engine given a whole 2,000-character text holds one worker until it has said all of it (and
may not finish within TTS_WORKER_TIMEOUT); the voice loop never sends more than a sentence of at
most SENTENCE_MAX_CHARS. `synthesize_pieces` cuts the text with the same splitter and speaks the
pieces one after the other: the first audio comes after the first piece, the whole stream is the
pieces' audio in order, and each worker job is one short piece.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from ..sentences import SentenceSplitter
from .base import AudioChunk
from .chain import NothingToSay, TtsStream, synthesize_with_fallback


def split_pieces(text: str, max_chars: int | None = None) -> list[str]:
    """`text` cut into sentences of at most `max_chars` (default SENTENCE_MAX_CHARS) characters,
    blank ones dropped; the voice loop's splitter, so both doors cut a text the same way."""
    splitter = SentenceSplitter(max_chars)
    return [piece for piece in splitter.feed(text) + splitter.flush() if piece.strip()]


async def synthesize_pieces(
    text: str, *, language: str, voices: Mapping[str, str] | None = None
) -> TtsStream:
    """Start speaking `text` piece by piece (see the module). The first piece with something to
    say picks the engine (the fallback chain, as `synthesize_with_fallback`); the later pieces
    are spoken by that engine and voice, so the audio keeps one format and rate.

    Raises what `synthesize_with_fallback` raises for the first piece (NothingToSay when no piece
    has anything to say). A later piece that fails raises TtsFailed or TtsUnavailable while the
    stream is iterated (the pieces before it were already sent); pieces with nothing to say
    (only emoji) are skipped.
    """
    pieces = split_pieces(text)
    nothing: NothingToSay | None = None
    for index, piece in enumerate(pieces):
        try:
            first = await synthesize_with_fallback(piece, language=language, voices=voices)
        except NothingToSay as exc:
            nothing = exc
            continue
        return TtsStream(
            first.engine,
            first.voice,
            first.first,
            _rest(first, pieces[index + 1 :], language),
            first.skipped,
        )
    raise nothing or NothingToSay("Nothing to say: the text is blank.")


async def _rest(first: TtsStream, pieces: list[str], language: str) -> AsyncIterator[AudioChunk]:
    """The first piece's audio after its first chunk, then every later piece's."""
    chunks = aiter(first)
    await anext(chunks)  # first.first: already sent as the stream's first chunk
    async for chunk in chunks:
        yield chunk
    voices = {first.engine: first.voice} if first.voice else {}
    for piece in pieces:
        try:
            stream = await synthesize_with_fallback(
                piece, language=language, voices=voices, engines=[first.engine]
            )
        except NothingToSay:
            continue
        async for chunk in stream:
            yield chunk
