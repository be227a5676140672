"""The split stage: deltas → numbered sentences (reported upstream too)."""

from __future__ import annotations

from audio_pipeline.sentences import SentenceSplitter
from voice.frames import Interruption, ReplyStarted, Sentence, TextDelta, TextEnd
from voice.stages.split import SplitStage

from .helpers import run_stage


def deltas(rid: str, *texts: str) -> list[TextDelta]:
    return [TextDelta(rid, text) for text in texts]


async def test_sentences_are_cut_numbered_and_reported():
    stage = SplitStage(SentenceSplitter, clock=lambda: 7.0)
    run = await run_stage(
        stage,
        [
            ReplyStarted("r1"),
            *deltas("r1", "Hello the", "re. How are", " you? Fine"),
            TextEnd("r1"),
        ],
    )
    sentences = run.of(Sentence)
    assert [(s.index, s.text.strip()) for s in sentences] == [
        (0, "Hello there."),
        (1, "How are you?"),
        (2, "Fine"),
    ]
    assert run.up == sentences and all(s.at == 7.0 for s in sentences)
    assert isinstance(run.down[-1], TextEnd)
    assert "".join(d.text for d in run.of(TextDelta)) == "Hello there. How are you? Fine"


async def test_an_unfinished_sentence_of_a_failed_reply_is_not_spoken():
    stage = SplitStage(SentenceSplitter)
    run = await run_stage(
        stage, [ReplyStarted("r1"), *deltas("r1", "Done. Not fin"), TextEnd("r1", complete=False)]
    )
    assert [s.text.strip() for s in run.of(Sentence)] == ["Done."]


async def test_each_reply_counts_from_zero_and_an_interruption_forgets_the_rest():
    stage = SplitStage(SentenceSplitter)
    run = await run_stage(
        stage,
        [
            ReplyStarted("r1"),
            *deltas("r1", "One. Half a sen"),
            Interruption("barge-in"),
            ReplyStarted("r2"),
            *deltas("r2", "Two. "),
            TextEnd("r2"),
        ],
    )
    assert [(s.response_id, s.index, s.text.strip()) for s in run.of(Sentence)] == [
        ("r1", 0, "One."),
        ("r2", 0, "Two."),
    ]
