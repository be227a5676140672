"""Speech fixtures (defined in tests/speech_samples.py; edge stays offline suite-wide)."""

from tests.speech_samples import (  # noqa: F401  (fixtures and helpers)
    closed_port,
    key_words_found,
    korean_16k,
    korean_model_path,
    tone,
)
