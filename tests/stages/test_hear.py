"""The hear stage with a scripted hearing: barge-in after enough speech, commits at the end of
turn (in audio time), none in push-to-talk mode; audio always passes on at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from audio_pipeline.hearing import VadUpdate
from audio_pipeline.turn import TurnVerdict
from audio_pipeline.vad import VadEvent
from voice.frames import AudioIn, BargeIn, Commit, Frame
from voice.stages.hear import HearStage

FRAME_MS = 40
FRAME = b"\0\0" * (16 * FRAME_MS)  # 40 ms at 16 kHz


@dataclass
class ScriptedHearing:
    """Speech between `speech` (start_ms, end_ms) spans; the turn model answers `wait_ms`."""

    speech: list[tuple[float, float]]
    wait_ms: float = 200.0
    engine: str = "smart_turn"
    position: float = 0.0
    verdicts: int = 0
    new_turns: int = 0
    closed: bool = False

    def _in_speech(self, at: float) -> bool:
        return any(start <= at < end for start, end in self.speech)

    async def feed(self, pcm16: bytes) -> VadUpdate:
        before, self.position = self.position, self.position + len(pcm16) / 32
        events = []
        for start, end in self.speech:
            if before <= start < self.position:
                events.append(VadEvent("start", start))
            if before <= end < self.position:
                events.append(VadEvent("pause", end))
            if before <= end + 200 < self.position:  # stop confirmed after 200 ms of silence
                events.append(VadEvent("stop", end, end - start))
        current = next((s for s, e in self.speech if s <= self.position and e + 200 > before), None)
        in_speech = current is not None and not any(e.kind == "stop" for e in events)
        return VadUpdate(tuple(events), self.position, in_speech, current if in_speech else None)

    async def verdict(self) -> TurnVerdict:
        self.verdicts += 1
        return TurnVerdict(self.wait_ms, self.wait_ms < 1000, 0.9, self.engine)

    async def new_turn(self) -> None:
        self.new_turns += 1

    def close(self) -> None:
        self.closed = True


async def drive(hearing, seconds: float, **options) -> tuple[list[Frame], HearStage]:
    async def opened():
        return hearing

    stage = HearStage(opened, input_rate=16000, clock=lambda: 0.0, **options)
    down: list[Frame] = []

    async def sink(frame: Frame) -> None:
        down.append(frame)

    stage.link(sink=sink)
    stage.start()
    for index in range(int(seconds * 1000 / FRAME_MS)):
        await stage.accept(AudioIn(FRAME, at=index * FRAME_MS / 1000))
        for _ in range(100):  # let the listener analyse this frame before the next one
            if hearing.position >= (index + 1) * FRAME_MS:
                break
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
    await stage.stop()
    assert hearing.closed
    return down, stage


async def test_audio_passes_on_and_a_sentence_barges_in_once():
    down, _ = await drive(ScriptedHearing([(500, 2500)]), 3.0, interrupt_min_speech_ms=250)
    assert sum(isinstance(f, AudioIn) for f in down) == 75
    [barge] = [f for f in down if isinstance(f, BargeIn)]
    assert 250 <= barge.speech_ms <= 250 + FRAME_MS
    assert down.index(barge) < 25, "pushed while the speech goes on (after ~0.8 s of audio)"


async def test_short_sounds_do_not_barge_in():
    down, _ = await drive(ScriptedHearing([(500, 700), (1500, 1600)]), 3.0)
    assert not [f for f in down if isinstance(f, BargeIn)]


async def test_the_turn_ends_after_the_silence_the_detector_asks_for():
    hearing = ScriptedHearing([(500, 1500)], wait_ms=600)
    down, _ = await drive(hearing, 3.0)
    [commit] = [f for f in down if isinstance(f, Commit)]
    assert commit.decided_by == "smart_turn" and commit.decided_at == 0.0
    audio_before = sum(isinstance(f, AudioIn) for f in down[: down.index(commit)])
    assert audio_before * FRAME_MS >= 1500 + 600, "not before 600 ms of silence"
    assert audio_before * FRAME_MS <= 1500 + 600 + 2 * FRAME_MS
    assert hearing.verdicts == 1 and hearing.new_turns == 1


async def test_speech_again_before_the_delay_continues_the_same_turn():
    hearing = ScriptedHearing([(500, 1000), (1500, 2000)], wait_ms=1500)
    down, _ = await drive(hearing, 4.0)
    commits = [f for f in down if isinstance(f, Commit)]
    assert len(commits) == 1, "the first pause was not the end of the turn"
    assert sum(isinstance(f, AudioIn) for f in down[: down.index(commits[0])]) * FRAME_MS >= 3500


async def test_push_to_talk_sends_no_commit_but_still_barges_in():
    down, _ = await drive(ScriptedHearing([(500, 1500)]), 3.0, server_turns=False)
    assert not [f for f in down if isinstance(f, Commit)]
    assert [f for f in down if isinstance(f, BargeIn)]


async def test_without_hearing_audio_still_flows():
    async def broken():
        raise RuntimeError("no VAD here")

    stage = HearStage(broken, input_rate=16000)
    down: list[Frame] = []

    async def sink(frame: Frame) -> None:
        down.append(frame)

    stage.link(sink=sink)
    stage.start()
    for index in range(10):
        await stage.accept(AudioIn(FRAME, at=index))
    await asyncio.sleep(0.05)
    await stage.stop()
    assert len(down) == 10 and all(isinstance(f, AudioIn) for f in down)
