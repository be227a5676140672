"""A benchmark client that speaks turns over the voice protocol, like a live microphone.

One `VoiceClient` per session: it streams PCM16 at real-time pace in 20 ms frames without a break
(silence between turns), and times every event of each turn from the end of the user's speech,
taken as the moment the frame holding the last speech sample was sent:

    transcript_final, first_token, first_sentence, first_chunk (the `response.audio` announcement),
    first_audio (first byte of reply audio), last_audio, done (`response.done`)

plus the server's own `metrics`. Works with any server that speaks the voz.v1 events (ours, the
naive server, the Pipecat peer in bench/peers/).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import websockets

from .spoken import RATE, Turn

FRAME_S = 0.02
FRAME_BYTES = int(RATE * FRAME_S) * 2
SILENCE = b"\0" * FRAME_BYTES
TURN_TIMEOUT_S = 30.0
GAP_S = 0.6  # silence after a reply before the next turn


@dataclass
class TurnResult:
    system: str
    turn: str
    language: str
    session: int
    marks: dict[str, float | None] = field(default_factory=dict)  # ms from the end of speech
    server: dict = field(default_factory=dict)  # the server's `metrics` event
    heard: str = ""
    reply: str = ""
    audio_bytes: int = 0
    sentences: int = 0
    errors: list[str] = field(default_factory=list)
    ok: bool = False


@dataclass
class _Response:
    started: float
    final_at: float | None = None
    heard: str = ""
    times: dict[str, float] = field(default_factory=dict)
    audio_bytes: int = 0
    sentences: int = 0
    done: dict | None = None
    metrics: dict | None = None


class VoiceClient:
    """One voice session. `await run(turns)` returns a TurnResult per turn."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        system: str = "voz",
        session: int = 0,
        timeout_s: float = TURN_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.token = token
        self.system = system
        self.session = session
        self.late_frames = 0  # frames sent more than one frame period after they were due
        self.frames_sent = 0
        self.errors: list[str] = []
        self._responses: dict[str, _Response] = {}
        self._order: list[str] = []
        self._finals: list[tuple[float, str]] = []
        self._pending_audio: str | None = None
        self.started: dict = {}

    async def run(self, turns: list[Turn], instance: str) -> list[TurnResult]:
        await self.open(instance)
        try:
            if "stt_engine" in self.started and not self.started["stt_engine"]:
                return [self._failed(turn, "no_recogniser") for turn in turns]
            return [await self.turn(turn) for turn in turns]
        finally:
            await self.close()

    async def open(self, instance: str) -> None:
        subprotocols = ["voz.v1", f"bearer.{self.token}"]
        self._ws = ws = await websockets.connect(
            self.url, subprotocols=subprotocols, max_size=2**24, open_timeout=60
        )
        await ws.send(
            json.dumps(
                {
                    "type": "session.start",
                    "instance": instance,
                    "input_audio": {"format": "pcm16", "sample_rate": RATE},
                    "output_audio": {"format": "wav"},
                }
            )
        )
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if event.get("type") == "session.started":
                self.started = event
                break
            if event.get("type") == "error":
                self.errors.append(event.get("code", "error"))
        self._receiver = asyncio.create_task(self._receive(ws))

    async def close(self) -> None:
        self._receiver.cancel()
        await asyncio.gather(self._receiver, return_exceptions=True)
        await self._ws.close()

    async def turn(self, turn: Turn) -> TurnResult:
        """Speak one turn at real-time pace; wait for its reply; a short silence after it."""
        ws = self._ws
        self._due = time.monotonic()
        pcm = turn.pcm()
        end_byte = int(turn.speech_end_s * RATE) * 2
        speech_end = None
        for offset in range(0, len(pcm), FRAME_BYTES):
            await self._send_frame(ws, pcm[offset : offset + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
            if speech_end is None and offset + FRAME_BYTES >= end_byte:
                speech_end = time.monotonic()
        speech_end = speech_end or time.monotonic()
        response = await self._await_reply(ws, speech_end)
        result = self._result(turn, speech_end, response)
        for _ in range(int(GAP_S / FRAME_S)):
            await self._send_frame(ws, SILENCE)
        return result

    async def _send_frame(self, ws, frame: bytes) -> None:
        self._due += FRAME_S
        delay = self._due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -FRAME_S:
            self.late_frames += 1
        await ws.send(frame)
        self.frames_sent += 1

    async def _await_reply(self, ws, speech_end: float) -> _Response | None:
        """Streams silence until a response that began after the speech ended is complete."""
        deadline = speech_end + self.timeout_s
        while time.monotonic() < deadline:
            for rid in reversed(self._order):
                response = self._responses[rid]
                if response.final_at is not None and response.final_at < speech_end - 1.0:
                    break  # Older turns.
                if response.metrics is not None and not (response.done or {}).get("interrupted"):
                    self._order.clear()
                    return response
            await self._send_frame(ws, SILENCE)
        return None

    def _failed(self, turn: Turn, reason: str) -> TurnResult:
        return TurnResult(self.system, turn.id, turn.language, self.session, errors=[reason])

    def _result(self, turn: Turn, speech_end: float, response: _Response | None) -> TurnResult:
        result = TurnResult(self.system, turn.id, turn.language, self.session)
        result.errors = list(self.errors)
        self.errors.clear()
        if response is None:
            result.errors.append("no_reply")
            return result

        def ms(moment: float | None) -> float | None:
            return None if moment is None else round((moment - speech_end) * 1000, 1)

        result.marks = {
            "transcript_final": ms(response.final_at),
            **{name: ms(moment) for name, moment in response.times.items()},
        }
        result.server = {k: v for k, v in (response.metrics or {}).items() if k.endswith("_ms")}
        result.heard = response.heard
        result.reply = (response.done or {}).get("text", "")
        result.audio_bytes = response.audio_bytes
        result.sentences = response.sentences
        result.ok = response.audio_bytes > 0
        return result

    async def _receive(self, ws) -> None:
        current: _Response | None = None
        async for frame in ws:
            now = time.monotonic()
            if isinstance(frame, bytes):
                target = self._responses.get(self._pending_audio or "") or current
                if target is not None:
                    target.times.setdefault("first_audio", now)
                    target.times["last_audio"] = now
                    target.audio_bytes += len(frame)
                continue
            event = json.loads(frame)
            kind = event.get("type")
            rid = event.get("response_id")
            if kind == "transcript.final":
                self._finals.append((now, event.get("text", "")))
            elif kind == "response.started":
                final_at, heard = self._finals[-1] if self._finals else (None, "")
                current = self._responses[rid] = _Response(now, final_at, heard)
                self._order.append(rid)
            elif kind == "error":
                self.errors.append(event.get("code", "error"))
            if rid not in self._responses:
                continue
            response = self._responses[rid]
            if kind == "response.text.delta":
                response.times.setdefault("first_token", now)
            elif kind == "response.sentence":
                response.times.setdefault("first_sentence", now)
                response.sentences += 1
            elif kind == "response.audio":
                response.times.setdefault("first_chunk", now)
                self._pending_audio = rid
            elif kind == "response.done":
                response.times["done"] = now
                response.done = event
            elif kind == "metrics":
                response.metrics = event
