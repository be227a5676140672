"""Load, before a server listens, what its first sessions would otherwise load while it serves.

Whatever a session loads at first use costs the first burst of sessions: on the event loop, or
on another thread holding the GIL (and Python's import lock) while the loop waits for it. Profiled
here (py-spy, 50 sessions starting 3 s after the server answered, bench/load.py --idle --ramp 0):
the reply engine's module (`openai` and its types: 600-700 ms of import, on the event loop in the
first turn), the URLconf (~100 ms), the voice loop's lazily imported modules, the first query's
compiler, and 16 socket threads started one by one from the loop (`Thread.start` waits for
each) with their database connections. A first voice session also loaded its recogniser's
model, the VAD and end-of-turn models and the Piper voice (~0.6 s for English). The TTS engines
that run native code start their worker processes here (each loads its model).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time

logger = logging.getLogger(__name__)

# Imported by a session at its first use (voice/engines.py keeps them lazy so that a module a
# deployment does not use is never loaded; the server loads them once, before it listens).
SESSION_MODULES = (
    "voice.preempt",
    "audio_pipeline.hearing",
)


def warm_up() -> dict[str, float]:
    """Load everything above (when `settings.WARM_UP`); returns the ms each part took.

    Parts that fail (a model missing, a database not migrated yet) are logged and left to the
    first session, which reports them as it always did; a warm-up never stops a server."""
    from django.conf import settings

    if not settings.WARM_UP:
        return {}
    took: dict[str, float] = {}
    for name, part in PARTS:
        started = time.monotonic()
        try:
            detail = part()
        except Exception as error:  # Whatever fails here fails again, reported, later.
            logger.warning("Warm-up of %s failed: %s", name, error)
            detail = None
        took[name] = round((time.monotonic() - started) * 1000, 1)
        if detail:
            logger.info("Warm-up of %s: %s", name, detail)
    logger.info("Warmed up in %.1f s: %s", sum(took.values()) / 1000, took)
    return took


def _tokens() -> None:
    from characters.tokens import count_tokens

    count_tokens("warm up")  # tiktoken's encoding: ~1-2 s, on the loop in the first turn.


def _speech_models() -> str:
    from audio_pipeline.stt import cache

    return f"Vosk models {cache.warm_up()}"


def _espeak() -> None:
    from django.conf import settings

    if settings.TTS_ESPEAK_IN_PROCESS:
        from audio_pipeline.tts.espeak import library_usable

        library_usable()  # Its workers start and load libespeak-ng and its data.


def _voice_models() -> str:
    """The models a voice session in the default language (LANGUAGE_CODE) opens: its
    recogniser's, the VAD and end-of-turn models, and the Piper workers, each loading the voice
    (~0.6 s for English here, paid by the first voice session otherwise). Other languages load
    at first use."""
    from django.conf import settings

    from audio_pipeline.stt import selection
    from audio_pipeline.tts import chain
    from voice import engines

    language = settings.LANGUAGE_CODE
    loaded = []
    if selection.effective_engine(language)[0] is not None:
        recognizer = selection.create_recognizer(language)  # Loads the shared model.
        loaded.append(f"{recognizer.engine} ({language})")
        del recognizer  # A PocketSphinx decoder goes back to the idle ones.
    if engines.voice_activity_enabled():
        from audio_pipeline.hearing import open_hearing

        open_hearing(16000).close()
        loaded.append("VAD and end of turn")
    if "piper" in chain.chain_for(language):
        from audio_pipeline.tts.piper_engine import piper_pool

        pool = piper_pool()
        pool.start()
        loaded.append(f"Piper voice in {pool.alive()} workers")
    return ", ".join(loaded)


def _reply_engine() -> None:
    from conversation.engines import get_engine

    get_engine()  # Imports the engine's client library (its event-loop clients come later).


def _modules() -> None:
    from django.db import connection

    for name in SESSION_MODULES:
        importlib.import_module(name)
    importlib.import_module(connection.ops.compiler_module)  # Else at the first query.


def _urls() -> None:
    from django.urls import Resolver404, get_resolver

    with contextlib.suppress(Resolver404):
        get_resolver().resolve("/healthz")  # Imports the URLconf and its views.


def _database() -> None:
    from realtime.sync_threads import socket_threads

    errors = socket_threads().start()  # The threads start even when the database is down.
    if errors:
        raise errors[0]


PARTS = (
    ("tokens", _tokens),
    ("speech models", _speech_models),
    ("espeak", _espeak),
    ("voice models", _voice_models),
    ("reply engine", _reply_engine),
    ("session modules", _modules),
    ("urls", _urls),
    ("database", _database),
)
