"""What flows through the voice pipeline: small frozen frames, one class per kind.

Downstream (client → model → client):
    AudioIn, Commit → [recognise] → Partial, Final
    Final, TypedText, ClientCancel → [turns] → Interruption, UserTurn
    UserTurn → [reply] → TranscriptStored, ReplyStarted, TextDelta…, TextEnd, ReplyDone
    TextDelta, TextEnd → [split] → Sentence…, TextEnd
    Sentence → [speak] → SentenceAudio | Failure
    everything left → [deliver] → wire events (voice/protocol.py)
Upstream reports (what happened downstream, for the reply stage to store what was heard):
    Sentence (from split), SentenceDelivered (from speak or deliver), SpeechDone (from deliver).

Times are `time.monotonic()` seconds. `response_id` ties a reply's frames together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Frame:
    """Base of every frame."""


@dataclass(frozen=True)
class SystemFrame(Frame):
    """Handled at once by every stage, overtaking queued frames (never queued itself)."""


@dataclass(frozen=True)
class ReplyFrame(Frame):
    """Part of one reply's stream: keeps its order behind the reply's earlier frames."""

    response_id: str


@dataclass(frozen=True)
class ReplyOutput(ReplyFrame):
    """Reply content that an interruption discards wherever it still waits."""


# Client input ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioIn(Frame):
    """PCM16 mono little-endian audio at the session's input rate."""

    data: bytes
    at: float


@dataclass(frozen=True)
class Commit(Frame):
    """`input_audio.commit`: the utterance ends now. Also sent by the hear stage when it decides
    the user's turn is over (`decided_by`: "smart_turn" or "silence"; `at` = end of speech)."""

    at: float
    decided_by: str | None = None
    decided_at: float | None = None
    tentative: bool = False  # a likely end of turn: flush the recogniser, do not end the turn


@dataclass(frozen=True)
class TypedText(Frame):
    """`input_text`: a whole typed turn (already validated and stripped)."""

    text: str
    at: float


@dataclass(frozen=True)
class ClientCancel(Frame):
    """`response.cancel`: stop the reply in flight."""


@dataclass(frozen=True)
class Ping(Frame):
    """`ping`; `id` is echoed in the `pong` when the client sent one."""

    id: Any = None
    has_id: bool = False


@dataclass(frozen=True)
class EndRequest(Frame):
    """`session.end`."""


# Recognition and turns ------------------------------------------------------------------------


@dataclass(frozen=True)
class Partial(Frame):
    """The recogniser's current hypothesis (replaces the previous one)."""

    text: str


@dataclass(frozen=True)
class Final(Frame):
    """A recognised utterance. `committed`: produced by an `input_audio.commit` (text may be "")."""

    text: str
    speech_end: float  # when the audio of the last word arrived
    final_at: float  # when the recogniser gave the result
    committed: bool = False
    decided_at: float | None = None  # when voice activity ended the turn (VAD + end of turn)
    tentative: bool = False  # from a tentative commit: the turn may still go on


@dataclass(frozen=True)
class BargeIn(Frame):
    """The user has been speaking for the interruption's minimum time (hear stage, VAD)."""

    at: float  # when the speech began
    speech_ms: float


@dataclass(frozen=True)
class PauseReply(Frame):
    """Speech long enough to interrupt began while the character spoke: hold the reply's output
    (the client pauses its playback on `input_audio.speech_started`) until words are heard
    (then an `Interruption` cuts it) or the speech ends without any (`ResumeReply`)."""


@dataclass(frozen=True)
class ResumeReply(Frame):
    """A false interruption (speech without words): the held reply goes on
    (`response.resumed`). `response_id`: the reply in flight, if the server still has one."""

    response_id: str | None = None


@dataclass(frozen=True)
class IgnoredTurn(Frame):
    """Speech heard while the character was speaking that was too short to interrupt it (a
    false interruption: "mm", "uh-huh", a cough with words read into it). The reply goes on;
    nothing is stored (`transcript.ignored`)."""

    text: str
    reason: str = "false_interruption"


@dataclass(frozen=True)
class TentativeTurn(Frame):
    """What the user has said so far, at a likely end of turn: the reply stage may start the model
    early (nothing stored or sent until the `UserTurn` confirms the same text)."""

    text: str


@dataclass(frozen=True)
class UserTurn(Frame):
    """One turn of the user's, to be stored and answered. `answer` is False when a newer turn
    superseded it before its reply began: it is stored, marked as having had no reply."""

    text: str
    speech_end: float
    final_at: float
    answer: bool = True
    decided_at: float | None = None  # when voice activity ended the turn


@dataclass(frozen=True)
class Interruption(SystemFrame):
    """Stop the reply in flight (barge-in, `response.cancel`, a new turn, closing)."""

    reason: str


# Reply ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptStored(ReplyFrame):
    """The user's message is stored (echoed as `transcript.final`)."""

    text: str
    message_id: str
    conversation_id: str


@dataclass(frozen=True)
class ReplyStarted(ReplyFrame):
    """A reply begins (`response.started`)."""


@dataclass(frozen=True)
class TextDelta(ReplyOutput):
    """Model text as it arrives."""

    text: str


@dataclass(frozen=True)
class TextEnd(ReplyOutput):
    """No more text for this reply. `complete` False (the model failed): drop an unfinished
    sentence instead of speaking it."""

    complete: bool = True


@dataclass(frozen=True)
class Sentence(ReplyOutput):
    """A complete sentence, numbered from 0 within its reply; `at` when it was cut."""

    index: int
    text: str
    at: float


@dataclass(frozen=True)
class SentenceAudio(ReplyOutput):
    """One sentence's complete, playable audio; `made_at` when synthesis finished."""

    index: int
    data: bytes
    format: str
    sample_rate: int
    engine: str
    made_at: float
    duration_ms: float | None = None  # how long it plays (None: unknown)


@dataclass(frozen=True)
class SentenceDelivered(ReplyFrame):
    """Upstream report: the client has this sentence (its audio was handed to the socket, or it
    had nothing to say aloud, or synthesis failed and only its text went out)."""

    index: int
    at: float
    made_at: float | None = None  # synthesis time when audio went out
    duration_ms: float | None = None  # how long its audio plays


@dataclass(frozen=True)
class ReplyEnded(ReplyFrame):
    """Upstream report from the reply stage: it is done with this reply (stored or failed)."""


@dataclass(frozen=True)
class SpeechDone(ReplyFrame):
    """Upstream report: every frame of this reply up to its TextEnd reached the socket."""


@dataclass(frozen=True)
class ReplyDone(ReplyFrame):
    """The reply is over and stored (`response.done`, then `metrics`)."""

    text: str
    interrupted: bool
    message_id: str | None
    conversation_id: str | None
    error: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict, hash=False)


# Session-level events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure(Frame):
    """An `error` event. `fatal`: the session closes next."""

    code: str
    message: str
    fatal: bool = False
    retry_after: float | None = None  # seconds (`rate_limited`)


@dataclass(frozen=True)
class Pong(Frame):
    id: Any = None
    has_id: bool = False


@dataclass(frozen=True)
class SessionStarted(Frame):
    """`session.started`: what the session runs with (`limits` is a VoiceLimits)."""

    session_id: str
    conversation_id: str | None
    instance_id: str
    instance_name: str
    character: str
    character_language: str
    language: str
    input_format: str
    input_rate: int
    output_format: str
    limits: Any
    stt_engine: str | None
    tts_engines: tuple[str, ...]
    llm_engine: str
    turn_detection: str | None  # "server_vad", or None: only input_audio.commit ends a turn
    barge_in: str = "speech_started"  # what interrupts a reply: "speech_started" or "partial"
    interrupt_min_speech_ms: float | None = None  # with "speech_started"


@dataclass(frozen=True)
class SessionEnded(Frame):
    conversation_id: str | None
