"""The reply stage: a user turn stored, answered, and its reply stored once, as heard.

The conversation is an in-memory fake with `reply_turn`'s contract whose enter is NOT shielded,
so these tests show that the stage itself never loses or orphans what was stored, whatever the
point at which an interruption cuts a turn.
"""

from __future__ import annotations

import asyncio

import pytest

from voice.frames import (
    Failure,
    Interruption,
    ReplyDone,
    ReplyStarted,
    Sentence,
    SentenceDelivered,
    SpeechDone,
    TextDelta,
    TextEnd,
    TranscriptStored,
    UserTurn,
)
from voice.stages.reply import ReplyStage

from .fakes import FakeConversation
from .helpers import Report, run_stage, settle, speech_done


def turn(text: str, at: float = 0.0) -> UserTurn:
    return UserTurn(text, speech_end=at, final_at=at + 0.1)


async def test_a_turn_is_stored_answered_and_its_reply_stored_once():
    conversation = FakeConversation(["Hello. ", "How are ", "you?"])
    stage = ReplyStage(conversation.open_turn)
    run = await run_stage(stage, [turn("Hi"), turn("Again")], downstream=speech_done)
    kinds = run.kinds()
    assert kinds[:6] == [
        "TranscriptStored",
        "ReplyStarted",
        "TextDelta",
        "TextDelta",
        "TextDelta",
        "TextEnd",
    ]
    assert kinds[6] == "ReplyDone"
    first_done = run.of(ReplyDone)[0]
    assert (first_done.text, first_done.interrupted, first_done.message_id) == (
        "Hello. How are you?",
        False,
        "m2",
    )
    assert [(m.role, m.text, m.interrupted) for m in conversation.messages] == [
        ("user", "Hi", False),
        ("assistant", "Hello. How are you?", False),
        ("user", "Again", False),
        ("assistant", "Hello. How are you?", False),
    ]
    assert conversation.conversations == {"c1"}  # The second turn continued the first's.
    stored = run.of(TranscriptStored)
    assert [(s.text, s.message_id, s.conversation_id) for s in stored] == [
        ("Hi", "m1", "c1"),
        ("Again", "m3", "c1"),
    ]
    assert conversation.messages[1].timings["stt_final_ms"] == 100.0


async def test_interrupted_while_speaking_stores_only_what_was_heard():
    conversation = FakeConversation(["One. ", "Two. ", "Three."])
    stage = ReplyStage(conversation.open_turn)
    rid = "fixed"
    stage._new_id = lambda: rid
    run = await run_stage(
        stage,
        [
            turn("Talk"),
            Report(Sentence(rid, 0, "One. ", at=1.0)),
            Report(Sentence(rid, 1, "Two. ", at=1.0)),
            Report(SentenceDelivered(rid, 0, at=2.0, made_at=1.5)),
            Interruption("barge-in"),
        ],
    )
    done = run.of(ReplyDone)[0]
    assert (done.text, done.interrupted) == ("One.", True)
    assert done.metrics["first_audio_ms"] == 2000.0
    assert done.metrics["tts_first_audio_ms"] == 1500.0
    reply = conversation.messages[1]
    assert (reply.text, reply.interrupted) == ("One.", True)
    assert run.kinds().index("Interruption") < run.kinds().index("ReplyDone")


async def test_model_failure_is_reported_and_the_partial_reply_stored_with_the_error():
    conversation = FakeConversation(["Partial ", "answer"], fail_after=1)
    stage = ReplyStage(conversation.open_turn)
    run = await run_stage(stage, [turn("Go")], downstream=speech_done)
    assert run.kinds()[-4:] == ["TextDelta", "Failure", "TextEnd", "ReplyDone"]
    assert run.of(TextEnd)[0].complete is False
    done = run.of(ReplyDone)[0]
    assert done.error == "llm_error: the model went away" and done.text == "Partial"
    assert run.of(Failure)[0].message == done.error
    assert conversation.messages[1].error == "llm_error: the model went away"


async def test_a_message_that_could_not_be_stored_gets_an_error_and_a_done():
    conversation = FakeConversation(fail_enter=True)
    run = await run_stage(ReplyStage(conversation.open_turn), [turn("Hi")])
    assert run.kinds() == ["Failure", "ReplyDone"]
    assert run.of(ReplyDone)[0].message_id is None
    assert conversation.messages == []


async def test_back_to_back_turns_keep_one_conversation_and_the_whole_history():
    """The reported example: "My name is Ana." then at once "What is my name?"."""
    conversation = FakeConversation(["You are Ana."])
    stage = ReplyStage(conversation.open_turn)
    run = await run_stage(stage, [], stop=False, downstream=speech_done)
    await stage.accept(turn("My name is Ana."))
    await stage.accept(Interruption("new turn"))  # No loop turn in between: the worst case.
    await stage.accept(turn("What is my name?"))
    await settle(stage)
    await stage.stop()
    assert conversation.conversations == {"c1"}
    assert "My name is Ana." in conversation.prompts[1]
    assert [s.text for s in run.of(TranscriptStored)] == ["My name is Ana.", "What is my name?"]
    first, second = run.of(ReplyDone)
    assert first.interrupted and first.text == "" and not second.interrupted
    assert [(m.role, m.interrupted) for m in conversation.messages] == [
        ("user", False),
        ("assistant", True),
        ("user", False),
        ("assistant", False),
    ]


def late_speech_done(stage: ReplyStage, steps: int = 4):
    """A downstream that reports the reply delivered a few loop turns after its text ended."""

    def downstream(frame):
        if isinstance(frame, TextEnd):

            async def later():
                for _ in range(steps):
                    await asyncio.sleep(0)
                stage.on_report(SpeechDone(frame.response_id))

            asyncio.get_running_loop().create_task(later())
        return []

    return downstream


async def cut_after(steps: int, *, second_turn: bool = True):
    """Turn 1, then after `steps` loop turns an interruption (and turn 2, or the close)."""
    conversation = FakeConversation(["A. ", "B. ", "C."], store_steps=3, delta_steps=2)
    stage = ReplyStage(conversation.open_turn)
    run = await run_stage(stage, [], stop=False)
    stage.link(sink=lambda frame: _collect(run, stage, frame))
    await stage.accept(turn("My name is Ana."))
    for _ in range(steps):
        await asyncio.sleep(0)
    await stage.interrupt(Interruption("new turn" if second_turn else "closed"))
    if second_turn:
        await stage.accept(turn("What is my name?"))
        await settle(stage)
    await stage.stop()
    return conversation, run


async def _collect(run, stage, frame):
    run.down.append(frame)
    for answer in late_speech_done(stage)(frame):
        stage.on_report(answer)


CUTS = range(0, 40)


@pytest.mark.parametrize("steps", CUTS)
async def test_a_cut_at_any_point_of_a_turn_loses_and_orphans_nothing(steps):
    conversation, run = await cut_after(steps)
    assert conversation.conversations == {"c1"}
    assert [(m.role, m.text) for m in conversation.messages if m.role == "user"] == [
        ("user", "My name is Ana."),
        ("user", "What is my name?"),
    ]
    assert [m.role for m in conversation.messages] == ["user", "assistant", "user", "assistant"]
    assert "My name is Ana." in conversation.prompts[1]
    stored_echoes = [s.text for s in run.of(TranscriptStored)]
    assert stored_echoes == ["My name is Ana.", "What is my name?"]
    first, second = run.of(ReplyDone)
    assert first.interrupted == conversation.messages[1].interrupted
    assert first.text == conversation.messages[1].text.strip()
    assert not second.interrupted
    kinds = run.kinds()
    second_stored = [i for i, kind in enumerate(kinds) if kind == "TranscriptStored"][1]
    assert kinds.index("ReplyDone") < second_stored
    assert len(run.of(ReplyStarted)) == 2 and not run.of(Failure)


async def test_the_cut_table_covers_every_phase_of_a_turn():
    """Before the message is stored, while streaming, while speaking, and after the reply."""
    phases = set()
    for steps in CUTS:
        _, run = await cut_after(steps)
        first_id = run.of(ReplyStarted)[0].response_id
        deltas = sum(1 for d in run.of(TextDelta) if d.response_id == first_id)
        first = run.of(ReplyDone)[0]
        ended = any(isinstance(f, TextEnd) and f.response_id == first_id for f in run.down)
        if first.interrupted:
            phases.add("speaking" if ended else ("streaming" if deltas else "before reply"))
        else:
            phases.add("after")
    assert phases == {"before reply", "streaming", "speaking", "after"}


@pytest.mark.parametrize("steps", CUTS)
async def test_closing_at_any_point_stores_the_turn_marked(steps):
    conversation, run = await cut_after(steps, second_turn=False)
    assert [m.role for m in conversation.messages] == ["user", "assistant"]
    [done] = run.of(ReplyDone)
    assert done.interrupted == conversation.messages[1].interrupted
    assert done.message_id == "m2" and done.conversation_id == "c1"
