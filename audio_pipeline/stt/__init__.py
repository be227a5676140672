"""Speech to text: `create_recognizer(language)` and the types the voice loop uses."""

from .base import AsyncTranscriber, SpeechRecognizer, SttUnavailable, Transcript, Word
from .selection import create_recognizer, effective_engine

__all__ = [
    "AsyncTranscriber",
    "SpeechRecognizer",
    "SttUnavailable",
    "Transcript",
    "Word",
    "create_recognizer",
    "effective_engine",
]
