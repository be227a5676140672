"""The TTS fallback chain: engines in settings order per language, each behind a circuit breaker.

An engine that fails before its first audio chunk hands over to the next; one that fails later
raises (the listener already heard part of it). Only the engine's own failures open its breaker
(it cannot start, it cannot be reached); a failure of one request (`TtsRequestError`: a voice
it lacks, a text it cannot say or that crashed its worker) does not, so one user's setting or
text never turns the engine off for everyone. The breaker's reason is shown to every user
(503s, GET /api/voices): it is only ever an engine failure, never a request's details.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from django.conf import settings

from ..spoken import spoken_text, tamed
from .base import (
    AudioChunk,
    CircuitBreaker,
    TtsEngine,
    TtsError,
    TtsRequestError,
    base_language,
)
from .edge import EdgeTts
from .espeak import EspeakTts
from .piper_engine import PiperTts

log = logging.getLogger(__name__)

ENGINES: dict[str, TtsEngine] = {e.name: e for e in (EdgeTts(), PiperTts(), EspeakTts())}
_breakers: dict[str, CircuitBreaker] = {}


class TtsUnavailable(TtsError):
    """Every engine in the chain was skipped or failed."""


class TtsFailed(TtsRequestError):
    """The engines that could speak failed on this request (its text or its voices); the
    engines themselves are fine."""


class UnknownVoice(ValueError):
    pass


class NothingToSay(TtsError):
    """The text has nothing a person would read aloud (only emoji or symbols)."""


def breaker(engine: str) -> CircuitBreaker:
    if engine not in _breakers:
        _breakers[engine] = CircuitBreaker(settings.TTS_CIRCUIT_SECONDS)
    _breakers[engine].seconds = settings.TTS_CIRCUIT_SECONDS
    return _breakers[engine]


def chain_for(language: str) -> list[str]:
    tag = language.lower()
    by_language = settings.TTS_ENGINES_BY_LANGUAGE
    return by_language.get(tag) or by_language.get(base_language(tag)) or settings.TTS_ENGINES


def voice_map_for(voice: str) -> dict[str, str]:
    """Which engines know a voice name (e.g. from the API's `voice`); UnknownVoice if none."""
    engine_name, sep, name = voice.partition(":")
    if sep and engine_name in ENGINES:
        if not ENGINES[engine_name].knows_voice(name):
            raise UnknownVoice(f"Engine '{engine_name}' has no voice '{name}'.")
        return {engine_name: name}
    found = {n: voice for n, e in ENGINES.items() if e.knows_voice(voice)}
    if not found:
        raise UnknownVoice(f"Unknown voice '{voice}'; see GET /api/voices.")
    return found


def voice_problem(engine: str, voice: str) -> str | None:
    """Why a character cannot be saved with `voice` for `engine`, or None. An engine that is
    not usable here (not installed) cannot tell its voices: any name is accepted for it."""
    found = ENGINES.get(engine)
    if found is None:
        return f"Unknown TTS engine {engine!r}; the engines are {', '.join(ENGINES)}."
    if found.available()[0] and not found.knows_voice(voice):
        return f"Engine {engine!r} has no voice {voice!r}; see GET /api/voices."
    return None


@dataclass
class TtsStream:
    """Audio from the engine that served; iterate it for every chunk (the first included)."""

    engine: str
    voice: str | None
    first: AudioChunk
    rest: AsyncIterator[AudioChunk]
    skipped: dict[str, str] = field(default_factory=dict)

    async def __aiter__(self) -> AsyncIterator[AudioChunk]:
        yield self.first
        try:
            async for chunk in self.rest:
                yield chunk
        except TtsRequestError:
            raise
        except Exception as exc:
            breaker(self.engine).record_failure(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            await self.aclose()
        breaker(self.engine).record_success()

    async def aclose(self) -> None:
        closer = getattr(self.rest, "aclose", None)
        if closer is not None:
            await closer()


async def synthesize_with_fallback(
    text: str,
    *,
    language: str,
    voices: Mapping[str, str] | None = None,
    engines: list[str] | None = None,
) -> TtsStream:
    """Start speaking `text`: the first engine of the chain that yields audio serves it.

    `voices` maps engine → voice (a Character's `voices`); engines without one use their
    default voice for `language`. Raises TtsFailed when an engine failed on this request (its
    text, its voice), else TtsUnavailable, with every engine's reason.
    """
    # Every door: emoji and symbols are read as people would, and runs no one reads are cut.
    text = tamed(
        spoken_text(text, language),
        repeats=settings.TTS_REPEAT_MAX,
        word_chars=settings.TTS_WORD_MAX_CHARS,
    )
    if not text:
        raise NothingToSay("Nothing to say: the text holds no words once emoji are removed.")
    voices = voices or {}
    skipped: dict[str, str] = {}
    failed_here = False  # An engine failed on this request (not as an engine).
    for name in engines or chain_for(language):
        engine = ENGINES.get(name)
        if engine is None:
            skipped[name] = "unknown engine"
            continue
        ok, why = engine.available()
        if not ok:
            skipped[name] = why
            continue
        if not engine.supports(language):
            skipped[name] = f"does not speak '{language}'"
            continue
        guard = breaker(name)
        if not guard.allow():
            skipped[name] = f"circuit open for {guard.remaining():.0f} s after: {guard.last_error}"
            continue
        voice = voices.get(name) or engine.default_voice(language)
        stream = aiter(engine.synthesize(text, language=language, voice=voice))
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            skipped[name] = "produced no audio"
            continue
        except TtsRequestError as exc:
            failed_here = True
            skipped[name] = str(exc)
            log.warning("TTS: %s failed on a request for '%s': %s", name, language, exc)
            continue
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            guard.record_failure(error)
            skipped[name] = error
            log.warning(
                "TTS: %s failed for '%s' (%s); trying the next engine.", name, language, error
            )
            continue
        return TtsStream(name, voice, first, stream, skipped)
    reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
    if failed_here:
        raise TtsFailed(f"The text could not be spoken: {reasons}")
    raise TtsUnavailable(f"No TTS engine could speak '{language}': {reasons}")


def engines_report() -> list[dict]:
    """Every engine, whether it can be used now and why not, and its voices (GET /api/voices)."""
    report = []
    for name, engine in ENGINES.items():
        ok, why = engine.available()
        guard = breaker(name)
        if ok and not guard.allow():
            ok, why = False, f"circuit open for {guard.remaining():.0f} s after: {guard.last_error}"
        report.append(
            {
                "name": name,
                "available": ok,
                "reason": why,
                "voices": [
                    {"name": v.name, "language": v.language, "description": v.description}
                    for v in (engine.voices() if engine.available()[0] else [])
                ],
            }
        )
    return report


def readiness() -> dict:
    """TTS chain per configured language, for /readyz."""
    details = {}
    for language, _ in settings.LANGUAGES:
        usable = [
            n
            for n in chain_for(language)
            if n in ENGINES and ENGINES[n].available()[0] and ENGINES[n].supports(language)
        ]
        details[language] = {"chain": chain_for(language), "usable": usable}
    return details
