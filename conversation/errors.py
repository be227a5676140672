"""The errors a turn can end with; each has a stable `code` that is safe to show to clients."""

from __future__ import annotations

from .engines import LlmBadRequestError, LlmTimeoutError


class ConversationEnded(Exception):
    """The conversation was ended; start a new one."""

    code = "conversation_ended"


class ConversationNotFound(Exception):
    """No such conversation for this instance and user (unknown, or someone else's)."""

    code = "not_found"


class TurnInProgress(Exception):
    """Another door (request, socket, process) is in a turn of this conversation: one at a time."""

    code = "turn_in_progress"


class TurnError(Exception):
    """A turn failed for a reason other than the model. `describe()` is what `Message.error` keeps."""

    code = "turn_failed"

    def describe(self) -> str:
        return f"{self.code}: {self}"[:200]


class MessageNotStored(TurnError):
    """The user's message could not be stored (the database is down): nothing was sent to the model."""

    code = "message_not_stored"


class ReplyNotStored(TurnError):
    """The reply was produced but the database refused it after every retry."""

    code = "reply_not_stored"


class ReplyOrphaned(TurnError):
    """The conversation (or its instance) was deleted while the reply was produced: there is
    nothing to store the reply in, and nothing to retry."""

    code = "not_found"


class LlmPromptTooLong(LlmBadRequestError):
    code = "prompt_too_long"


class LlmStalledError(LlmTimeoutError):
    """The reply had started, then no token came for `LLM_TOKEN_TIMEOUT` seconds."""

    code = "llm_stalled"
