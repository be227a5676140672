"""How long a character's reply may be: at most half the context window of the model it talks to.

A `max_tokens` at or above the context left no room for the prompt, so every turn failed
(`PromptTooLong`) long after the setting was saved. The context is the configured one:
`LLM_CONTEXT_TOKENS` when set, else the local model's `LOCAL_CONTEXT_TOKENS` (llama.cpp's n_ctx),
else the OpenAI-compatible model's entry in `characters.prompt.MODEL_CONTEXT_TOKENS`.
"""

from __future__ import annotations

from django.conf import settings

from .prompt import context_window


def configured_model_context(model_name: str) -> tuple[str, int]:
    """(the model a character with `model_name` talks to, its context in tokens)."""
    if settings.LLM_ENGINE == "local":
        return "the local model", settings.LLM_CONTEXT_TOKENS or settings.LOCAL_CONTEXT_TOKENS
    model = model_name or settings.OPENAI_MODEL
    return model, context_window(model, settings.LLM_CONTEXT_TOKENS)


def max_reply_tokens(context: int) -> int:
    """The most tokens a reply may take in a `context`-token window: half; the prompt has the rest."""
    return max(1, context // 2)


def reply_tokens_problem(max_tokens: int, model_name: str) -> str | None:
    """Why `max_tokens` cannot be a reply's limit for `model_name`, or None when it can."""
    model, context = configured_model_context(model_name)
    limit = max_reply_tokens(context)
    if max_tokens <= limit:
        return None
    return (
        f"At most {limit} for {model}: half its {context}-token context "
        "(the prompt needs the rest)."
    )
