"""The reply stage and preemption, with plain frames: a tentative turn starts the model early;
the confirmed turn uses it only when its text is the same, else the early work is cancelled."""

from __future__ import annotations

from typing import Any

from voice.frames import ReplyDone, TentativeTurn, TranscriptStored, UserTurn
from voice.stages.reply import ReplyStage

from .fakes import FakeConversation
from .helpers import run_stage, speech_done


class Early:
    def __init__(self, text: str) -> None:
        self.text = text
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Conversation(FakeConversation):
    def __init__(self) -> None:
        super().__init__()
        self.early_used: list[Any] = []

    def open_turn(self, text: str, conversation_id: Any, early: Any = None):
        self.early_used.append(early)
        return super().open_turn(text, conversation_id)


def stage_with(conversation: Conversation, started: list[Early]) -> ReplyStage:
    async def preempt(text: str, conversation_id: Any) -> Early:
        started.append(Early(text))
        return started[-1]

    return ReplyStage(conversation.open_turn, preempt=preempt)


async def test_the_same_text_hands_the_early_work_over():
    conversation, started = Conversation(), []
    run = await run_stage(
        stage_with(conversation, started),
        [TentativeTurn("hello there"), UserTurn("hello there", 0.0, 0.0)],
        downstream=speech_done,
    )
    assert [e.text for e in started] == ["hello there"]
    assert conversation.early_used == [started[0]] and not started[0].cancelled
    assert run.of(ReplyDone)[0].metrics["preempted"] is True


async def test_a_different_final_cancels_it_and_stores_only_the_confirmed_turn():
    conversation, started = Conversation(), []
    run = await run_stage(
        stage_with(conversation, started),
        [
            TentativeTurn("hello"),
            TentativeTurn("hello there"),
            UserTurn("hello there, friend", 0, 0),
        ],
        downstream=speech_done,
    )
    # The first start was superseded before it ran; the second was cancelled at the turn.
    assert [e.text for e in started] == ["hello there"]
    assert all(e.cancelled for e in started), "the early work was discarded"
    assert conversation.early_used == [None]
    assert [m.text for m in conversation.messages if m.role == "user"] == ["hello there, friend"]
    assert [f.text for f in run.of(TranscriptStored)] == ["hello there, friend"]
    assert run.of(ReplyDone)[0].metrics["preempted"] is False


async def test_nothing_starts_without_a_preemptor():
    conversation = Conversation()
    stage = ReplyStage(conversation.open_turn)
    await run_stage(stage, [TentativeTurn("hi"), UserTurn("hi", 0, 0)], downstream=speech_done)
    assert conversation.early_used == [None]
