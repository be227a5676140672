"""Which TTS voices a character may be saved with: the speech app answers (it registers its
check at start-up, audio_pipeline/apps.py), so this app never imports it."""

from __future__ import annotations

from collections.abc import Callable

VoiceCheck = Callable[[str, str], str | None]  # (engine, voice) → why not, or None.

_check: VoiceCheck | None = None


def register_voice_check(check: VoiceCheck) -> None:
    global _check
    _check = check


def voice_problem(engine: str, voice: str) -> str | None:
    """Why `voice` cannot be used with `engine`; None when it can (or nothing can tell)."""
    return _check(engine, voice) if _check else None
