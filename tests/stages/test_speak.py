"""The speak stage: sentences → audio in order; failures and silent sentences are reported."""

from __future__ import annotations

import asyncio

from voice.frames import Failure, Interruption, Sentence, SentenceAudio, SentenceDelivered, TextEnd
from voice.stages.speak import SpeakStage

from .fakes import FakeVoice
from .helpers import run_stage, settle


def sentence(index: int, text: str, rid: str = "r1") -> Sentence:
    return Sentence(rid, index, text, at=1.0)


async def test_each_sentence_goes_out_before_its_audio_and_the_end_after_all_audio():
    voice = FakeVoice()
    stage = SpeakStage(voice, clock=lambda: 2.0)
    run = await run_stage(stage, [sentence(0, "Hi."), sentence(1, " There."), TextEnd("r1")])
    assert run.kinds() == ["Sentence", "SentenceAudio", "Sentence", "SentenceAudio", "TextEnd"]
    audio = run.of(SentenceAudio)
    assert [(a.index, a.data, a.made_at) for a in audio] == [(0, b"Hi.", 2.0), (1, b"There.", 2.0)]
    assert run.up == []  # Audio is delivered by the last stage, not here.


async def test_nothing_to_say_and_failed_synthesis_count_as_delivered():
    voice = FakeVoice(fail_on="boom")
    stage = SpeakStage(voice, speakable=lambda text: text.replace("*", "").strip())
    run = await run_stage(stage, [sentence(0, "**"), sentence(1, "boom now."), sentence(2, "ok.")])
    assert [(r.index, r.made_at) for r in run.up if isinstance(r, SentenceDelivered)] == [
        (0, None),
        (1, None),
    ]
    [failure] = run.of(Failure)
    assert failure.code == "tts_failed" and "sentence 1" in failure.message
    assert [a.index for a in run.of(SentenceAudio)] == [2]


async def test_interruption_cancels_synthesis_and_drops_waiting_sentences():
    voice = FakeVoice()
    voice.gate = asyncio.Event()  # Synthesis hangs until released.
    stage = SpeakStage(voice)
    run = await run_stage(
        stage, [sentence(0, "One."), sentence(1, "Two."), TextEnd("r1")], stop=False
    )
    assert stage._work is not None  # Busy with sentence 0.
    await stage.accept(Interruption("barge-in"))
    voice.gate.set()
    await stage.accept(sentence(0, "New.", rid="r2"))
    await settle(stage)
    await stage.stop()
    assert voice.spoken == ["New."]
    assert [(a.response_id, a.index) for a in run.of(SentenceAudio)] == [("r2", 0)]
    assert not run.of(TextEnd)  # The interrupted reply's end was dropped with it.
    assert run.of(Interruption)  # The interruption went on down the chain.
