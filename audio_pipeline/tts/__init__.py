"""Text to speech: `synthesize_with_fallback(text, language=..., voices=...)` and the types."""

from .base import AudioChunk, CircuitBreaker, TtsEngine, TtsError, TtsRequestError, Voice
from .chain import (
    ENGINES,
    NothingToSay,
    TtsFailed,
    TtsStream,
    TtsUnavailable,
    UnknownVoice,
    breaker,
    engines_report,
    synthesize_with_fallback,
    voice_map_for,
)

__all__ = [
    "ENGINES",
    "AudioChunk",
    "CircuitBreaker",
    "NothingToSay",
    "TtsEngine",
    "TtsError",
    "TtsFailed",
    "TtsRequestError",
    "TtsStream",
    "TtsUnavailable",
    "UnknownVoice",
    "Voice",
    "breaker",
    "engines_report",
    "synthesize_with_fallback",
    "voice_map_for",
]
