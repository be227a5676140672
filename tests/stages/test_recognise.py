"""The recognise stage: audio → partials and finals; the recogniser is opened lazily."""

from __future__ import annotations

from voice.frames import AudioIn, Commit, Failure, Final, Partial
from voice.stages.recognise import RecogniseStage

from .fakes import FakeRecogniser, Heard, Word
from .helpers import run_stage


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def opener(recogniser):
    opened = []

    async def open_recogniser():
        opened.append(recogniser)
        return recogniser

    return open_recogniser, opened


CHUNK = b"\x00\x00" * 1600  # 0.1 s at 16 kHz


async def test_text_only_session_never_opens_a_recogniser():
    open_recogniser, opened = opener(FakeRecogniser([]))
    stage = RecogniseStage(open_recogniser, input_rate=16000)
    run = await run_stage(stage, [Commit(at=1.0)])
    assert opened == []
    [final] = run.of(Final)
    assert (final.text, final.committed) == ("", True)


async def test_partials_once_per_change_then_final_timed_from_the_last_word():
    clock = Clock()
    recogniser = FakeRecogniser(
        [
            [Heard("hello", False)],
            [Heard("hello", False)],  # unchanged: not repeated
            [Heard("hello there", False)],
            [Heard("hello there", True, (Word("hello", 0.0, 0.05), Word("there", 0.1, 0.15)))],
        ]
    )
    open_recogniser, opened = opener(recogniser)
    stage = RecogniseStage(open_recogniser, input_rate=16000, clock=clock)
    frames = []
    for _ in range(4):
        frames.append(AudioIn(CHUNK, clock.now))
    run = await run_stage(stage, frames)
    assert len(opened) == 1
    assert [f.text for f in run.of(Partial)] == ["hello", "hello there"]
    [final] = run.of(Final)
    assert final.text == "hello there" and not final.committed
    assert final.speech_end == 10.0 and final.final_at == 10.0
    assert run.kinds() == ["Partial", "Partial", "Final"]


async def test_speech_end_is_when_the_audio_arrived_not_when_it_was_decoded():
    """Under load frames wait in the queue: timing from the end of speech starts at arrival."""
    clock = Clock()
    words = (Word("hi", 0.0, 0.05),)
    recogniser = FakeRecogniser([[], [Heard("hi", True, words)]])
    open_recogniser, _ = opener(recogniser)
    stage = RecogniseStage(open_recogniser, input_rate=16000, clock=clock)
    arrived = clock.now - 3.0  # both frames arrived 3 s before they are processed
    run = await run_stage(stage, [AudioIn(CHUNK, arrived), AudioIn(CHUNK, arrived + 0.1)])
    [final] = run.of(Final)
    assert final.speech_end == arrived and final.final_at == clock.now


async def test_commit_flushes_a_final():
    recogniser = FakeRecogniser([[Heard("good", False)]], at_finish=Heard("good morning", True))
    open_recogniser, _ = opener(recogniser)
    stage = RecogniseStage(open_recogniser, input_rate=16000)
    run = await run_stage(stage, [AudioIn(CHUNK, 0.0), Commit(at=0.1)])
    final = run.of(Final)[-1]
    assert (final.text, final.committed) == ("good morning", True)


async def test_a_failing_flush_still_ends_the_utterance():
    recogniser = FakeRecogniser([[Heard("hold on", True)]], at_finish=IndexError("buffer"))
    open_recogniser, _ = opener(recogniser)
    stage = RecogniseStage(open_recogniser, input_rate=16000)
    run = await run_stage(stage, [AudioIn(CHUNK, 0.0), Commit(at=0.1)])
    assert run.kinds() == ["Final", "Failure", "Final"]
    assert run.of(Failure)[0].code == "stt_failed"
    assert [(f.text, f.committed) for f in run.of(Final)] == [("hold on", False), ("", True)]


async def test_unavailable_recogniser_is_reported_once():
    async def broken():
        raise RuntimeError("no model for 'xx'")

    stage = RecogniseStage(broken, input_rate=16000)
    run = await run_stage(stage, [AudioIn(CHUNK, 0.0), AudioIn(CHUNK, 0.1), AudioIn(CHUNK, 0.2)])
    [failure] = run.of(Failure)
    assert failure.code == "stt_failed" and "no model for 'xx'" in failure.message
    assert not run.of(Final) and not run.of(Partial)


async def test_close_releases_the_recogniser():
    recogniser = FakeRecogniser([])
    open_recogniser, _ = opener(recogniser)
    stage = RecogniseStage(open_recogniser, input_rate=16000)
    await run_stage(stage, [AudioIn(CHUNK, 0.0)])
    assert stage.opened
    stage.close()
    assert recogniser.closed and not stage.opened


async def test_audio_beyond_the_queue_bound_is_dropped_with_one_error():
    recogniser = FakeRecogniser([])
    open_recogniser, _ = opener(recogniser)
    stage = RecogniseStage(open_recogniser, input_rate=16000, max_queue=2)
    run = await run_stage(stage, [], stop=False)
    for n in range(5):  # Sent without letting the stage run: the queue fills up.
        await stage.accept(AudioIn(CHUNK, float(n)))
    await stage.stop()
    assert [f.code for f in run.of(Failure)] == ["stt_failed"]
    assert "behind" in run.of(Failure)[0].message
