"""edge-tts: Microsoft's online neural voices, streamed as MP3 and always bounded by timeouts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from django.conf import settings

from .base import AudioChunk, TtsError, TtsRequestError, Voice, base_language

SAMPLE_RATE = 24000  # edge-tts' default output: audio-24khz-48kbitrate-mono-mp3
# As edge-tts checks it (a name it refuses would fail every sentence of a character).
VOICE_NAME = re.compile(r"^[a-z]{2,3}-[A-Z]{2,8}(-[A-Za-z0-9]+)?-[A-Za-z]+Neural$")
# A few well-known voices to list offline; any name of the edge form is accepted.
KNOWN_VOICES = (
    Voice("es-ES-AlvaroNeural", "edge", "es-ES", "male"),
    Voice("es-ES-ElviraNeural", "edge", "es-ES", "female"),
    Voice("es-MX-DaliaNeural", "edge", "es-MX", "female"),
    Voice("es-MX-JorgeNeural", "edge", "es-MX", "male"),
    Voice("en-US-AriaNeural", "edge", "en-US", "female"),
    Voice("en-US-GuyNeural", "edge", "en-US", "male"),
    Voice("en-GB-SoniaNeural", "edge", "en-GB", "female"),
)


class EdgeTts:
    name = "edge"

    def available(self) -> tuple[bool, str]:
        try:
            import edge_tts  # noqa: F401
        except ImportError:
            return False, "edge-tts is not installed"
        return True, "online engine: needs access to speech.platform.bing.com"

    def supports(self, language: str) -> bool:
        return True

    def default_voice(self, language: str) -> str | None:
        voices = settings.TTS_EDGE_VOICES
        return voices.get(language.lower()) or voices.get(base_language(language))

    def knows_voice(self, voice: str) -> bool:
        return bool(VOICE_NAME.match(voice))

    def voices(self) -> list[Voice]:
        return list(KNOWN_VOICES)

    async def synthesize(
        self, text: str, *, language: str, voice: str | None
    ) -> AsyncIterator[AudioChunk]:
        import edge_tts

        voice = voice or self.default_voice(language)
        if voice and not self.knows_voice(voice):
            raise TtsRequestError(f"{voice!r} is not an edge voice name (e.g. en-US-AriaNeural).")
        if not voice:
            raise TtsRequestError(f"No edge voice configured for '{language}' (TTS_EDGE_VOICES).")
        connect = settings.TTS_CONNECT_TIMEOUT
        per_chunk = settings.TTS_CHUNK_TIMEOUT
        try:
            communicate = edge_tts.Communicate(
                text,
                voice,
                proxy=settings.TTS_EDGE_PROXY or None,
                connect_timeout=max(1, round(connect)),
                receive_timeout=max(1, round(per_chunk)),
            )
        except ValueError as exc:  # The voice's name: this request's, not the engine's.
            raise TtsRequestError(f"edge-tts refused it: {exc}") from exc
        stream = communicate.stream()
        timeout = connect + per_chunk  # The first chunk also pays for the connection.
        try:
            while True:
                try:
                    item = await asyncio.wait_for(anext(stream), timeout)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise TtsError(f"edge-tts sent nothing for {timeout:.1f} s") from exc
                except edge_tts.exceptions.NoAudioReceived as exc:
                    # The service answered: this voice or this text gave nothing to say.
                    raise TtsRequestError(f"edge-tts made no audio with voice {voice!r}") from exc
                except (OSError, edge_tts.exceptions.EdgeTTSException, ValueError) as exc:
                    raise TtsError(f"edge-tts failed: {type(exc).__name__}: {exc}") from exc
                except Exception as exc:  # aiohttp errors that are not OSErrors.
                    if type(exc).__module__.startswith("aiohttp"):
                        raise TtsError(f"edge-tts failed: {type(exc).__name__}: {exc}") from exc
                    raise
                timeout = per_chunk
                if item.get("type") == "audio" and item.get("data"):
                    yield AudioChunk(item["data"], "mp3", SAMPLE_RATE)
        finally:
            await stream.aclose()
