"""The turns stage: which finals and texts become turns, when to interrupt, the rate limit."""

from __future__ import annotations

from voice.frames import ClientCancel, Failure, Final, Interruption, Partial, TypedText, UserTurn
from voice.stages.turns import TurnsStage

from .helpers import run_stage


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
    allowed = iter([True, False])
    stage = TurnsStage(allow_turn=lambda: next(allowed), refusal="slow down")
    run = await run_stage(stage, [TypedText("one", 0.0), TypedText("two", 0.1)])
    assert run.kinds() == ["Interruption", "UserTurn", "Failure"]
    failure = run.of(Failure)[0]
    assert (failure.code, failure.message) == ("rate_limited", "slow down")
