"""The turns stage: which finals and texts become turns, when to interrupt, the rate limit."""

from __future__ import annotations

import asyncio

from voice.frames import (
    BargeIn,
    ClientCancel,
    Failure,
    Final,
    IgnoredTurn,
    Interruption,
    Partial,
    ReplyEnded,
    ReplyStarted,
    ResumeReply,
    SentenceDelivered,
    TentativeTurn,
    TypedText,
    UserTurn,
)
from voice.stages.turns import TurnsStage

from .helpers import Report, run_stage


def final(text: str, end: float, *, committed: bool = False) -> Final:
    return Final(text, speech_end=end, final_at=end + 0.2, committed=committed)


async def test_server_vad_each_final_is_a_turn_after_an_interruption():
    run = await run_stage(TurnsStage(), [final("hello there", 1.0), final("", 2.0)])
    assert run.kinds() == ["Interruption", "UserTurn"]
    [turn] = run.of(UserTurn)
    assert (turn.text, turn.speech_end, turn.final_at) == ("hello there", 1.0, 1.2)


async def test_partial_goes_out_then_interrupts():
    run = await run_stage(TurnsStage(), [Partial("wait")])
    assert run.kinds() == ["Partial", "Interruption"]
    assert run.down[1].reason == "barge-in"


async def test_typed_text_and_cancel():
    run = await run_stage(TurnsStage(), [TypedText("hi", at=5.0), ClientCancel()])
    assert run.kinds() == ["Interruption", "UserTurn", "Interruption"]
    assert run.of(UserTurn)[0].speech_end == 5.0
    assert run.of(Interruption)[-1].reason == "cancel"


async def test_manual_a_hold_with_pauses_is_one_turn_at_commit():
    stage = TurnsStage(turn_detection=None)
    run = await run_stage(
        stage,
        [
            Partial("my name"),
            final("my name is Ana", 1.0),  # the recogniser's endpoint at a pause
            Partial("and I"),
            final("and I like tea", 3.0),
            final("", 3.5, committed=True),  # the button is released
        ],
    )
    [turn] = run.of(UserTurn)
    assert turn.text == "my name is Ana and I like tea"
    assert turn.speech_end == 3.0
    assert run.kinds()[-2:] == ["Interruption", "UserTurn"]


async def test_manual_commit_with_words_and_empty_commit():
    stage = TurnsStage(turn_detection=None)
    run = await run_stage(
        stage, [final("", 1.0, committed=True), final("yes", 2.0, committed=True)]
    )
    assert [t.text for t in run.of(UserTurn)] == ["yes"]


async def test_rate_limited_turn_is_refused_and_interrupts_nothing():
    answers = iter([None, Failure("rate_limited", "slow down", retry_after=12)])

    async def allow_turn() -> Failure | None:
        return next(answers)

    stage = TurnsStage(allow_turn=allow_turn)
    run = await run_stage(stage, [TypedText("one", 0.0), TypedText("two", 0.1)])
    assert run.kinds() == ["Interruption", "UserTurn", "Failure"]
    failure = run.of(Failure)[0]
    assert (failure.code, failure.message, failure.retry_after) == ("rate_limited", "slow down", 12)


# False interruptions ---------------------------------------------------------------------------


def vad_final(text: str, end: float) -> Final:
    """A final whose turn voice activity (VAD + end of turn) ended."""
    return Final(text, speech_end=end, final_at=end + 0.2, committed=True, decided_at=end + 0.3)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_short_mm_while_the_character_replies_is_ignored_and_interrupts_nothing():
    stage = TurnsStage(voice_activity=True)
    run = await run_stage(stage, [Report(ReplyStarted("r1")), vad_final("Mm.", 1.0)])
    assert run.kinds() == ["IgnoredTurn"]
    assert run.of(IgnoredTurn)[0].text == "Mm."


async def test_speech_long_enough_to_barge_in_makes_a_turn_while_replying():
    stage = TurnsStage(voice_activity=True)
    run = await run_stage(
        stage,
        [Report(ReplyStarted("r1")), BargeIn(0.5, 250.0), vad_final("Wait, stop.", 1.0)],
    )
    # Paused at once, cut when the words arrive, then the turn.
    assert run.kinds() == ["BargeIn", "PauseReply", "Interruption", "Interruption", "UserTurn"]
    assert run.of(UserTurn)[0].text == "Wait, stop."


async def test_a_partial_with_words_cuts_a_paused_reply():
    stage = TurnsStage(voice_activity=True)
    run = await run_stage(
        stage, [Report(ReplyStarted("r1")), BargeIn(0.5, 260.0), Partial(""), Partial("wait")]
    )
    assert run.kinds() == ["BargeIn", "PauseReply", "Partial", "Partial", "Interruption"]
    assert run.of(Interruption)[0].reason == "barge-in"


async def test_speech_without_words_resumes_the_paused_reply():
    """A cough long enough to barge in: the reply pauses, then resumes when the speech ends
    with no words; nothing is interrupted and no turn is made."""
    stage = TurnsStage(voice_activity=True)
    run = await run_stage(
        stage, [Report(ReplyStarted("r1")), BargeIn(0.5, 300.0), vad_final("", 1.2)]
    )
    assert run.kinds() == ["BargeIn", "PauseReply", "ResumeReply"]
    assert run.of(ResumeReply)[0].response_id == "r1"


async def test_a_pause_nobody_ends_resumes_after_the_limit():
    stage = TurnsStage(voice_activity=True, pause_limit_s=0.05)
    run = await run_stage(stage, [Report(ReplyStarted("r1")), BargeIn(0.5, 300.0)], stop=False)
    await asyncio.sleep(0.1)
    await stage.stop()
    assert run.kinds() == ["BargeIn", "PauseReply", "ResumeReply"]


async def test_push_to_talk_speech_interrupts_at_once():
    stage = TurnsStage(turn_detection=None, voice_activity=True)
    run = await run_stage(stage, [Report(ReplyStarted("r1")), BargeIn(0.5, 300.0)])
    assert run.kinds() == ["BargeIn", "Interruption"]


async def test_speech_when_the_character_is_silent_pauses_nothing():
    stage = TurnsStage(voice_activity=True)
    run = await run_stage(stage, [BargeIn(0.5, 300.0), vad_final("Hello there.", 1.0)])
    assert "PauseReply" not in run.kinds()
    assert [t.text for t in run.of(UserTurn)] == ["Hello there."]


async def test_a_short_word_when_the_character_is_silent_is_a_turn():
    stage = TurnsStage(voice_activity=True)
    run = await run_stage(
        stage, [Report(ReplyStarted("r1")), Report(ReplyEnded("r1")), vad_final("Hi.", 1.0)]
    )
    assert [t.text for t in run.of(UserTurn)] == ["Hi."]


async def test_the_rule_holds_while_delivered_audio_still_plays_at_the_client():
    clock = Clock(100.0)
    stage = TurnsStage(voice_activity=True, clock=clock)
    played = [
        Report(ReplyStarted("r1")),
        Report(SentenceDelivered("r1", 0, at=100.0, duration_ms=2000.0)),
        Report(SentenceDelivered("r1", 1, at=100.1, duration_ms=3000.0)),  # queued behind 0
        Report(ReplyEnded("r1")),  # all sent; the client plays until 105.0
    ]
    run = await run_stage(stage, [*played, vad_final("Mm-hm.", 1.0)], stop=False)
    assert run.kinds() == ["IgnoredTurn"]
    clock.now = 104.9
    await run_stage(stage, [vad_final("Yeah.", 2.0)], run=run, stop=False)
    assert run.kinds() == ["IgnoredTurn", "IgnoredTurn"]
    clock.now = 105.1  # played out
    await run_stage(stage, [vad_final("Okay.", 3.0)], run=run)
    assert [t.text for t in run.of(UserTurn)] == ["Okay."]


async def test_after_an_interruption_the_client_is_silent_so_a_short_word_is_a_turn():
    clock = Clock(100.0)
    stage = TurnsStage(voice_activity=True, clock=clock)
    run = await run_stage(
        stage,
        [
            Report(ReplyStarted("r1")),
            Report(SentenceDelivered("r1", 0, at=100.0, duration_ms=5000.0)),
            ClientCancel(),
            Report(ReplyEnded("r1")),
            vad_final("Yes.", 1.0),
        ],
    )
    assert [t.text for t in run.of(UserTurn)] == ["Yes."]


async def test_push_to_talk_commits_are_always_turns_even_while_replying():
    stage = TurnsStage(turn_detection=None, voice_activity=True)
    run = await run_stage(stage, [Report(ReplyStarted("r1")), final("no", 1.0, committed=True)])
    assert [t.text for t in run.of(UserTurn)] == ["no"]


async def test_no_early_reply_is_started_for_a_false_interruption():
    stage = TurnsStage(voice_activity=True)
    tentative = Final("Mm.", speech_end=1.0, final_at=1.2, tentative=True)
    run = await run_stage(stage, [Report(ReplyStarted("r1")), tentative])
    assert run.of(TentativeTurn) == []
