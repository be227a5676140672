"""Memory consolidation as small edits: the model proposes, these pure helpers check and apply.

After a conversation the model answers with JSON edits, one fact each (as Letta's memory tools:
append, replace, remove), never a rewrite:

    {"edits": [
      {"op": "add", "text": "Ana moved to Lima."},
      {"op": "replace", "old": "Ana likes tea.", "new": "Ana likes green tea."},
      {"op": "remove", "old": "Ana is looking for a flat."}
    ]}

`parse_edits` rejects anything else (`BadEdits` says why); `apply_edits` applies them in order and
rejects the whole set if one does not fit (an `old` text that is not in memory exactly once, a
result over the limit). Every fact that no edit names is kept, byte for byte.
`conversation.memory.memory_consolidate` runs this with an engine and keeps a `MemoryRevision`
per applied edit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .prompt import Turn, language_name

MAX_EDITS = 8
FACT_MAX_CHARS = 300
OPS = ("add", "replace", "remove")


class BadEdits(ValueError):
    """The model's answer is not a well-formed, applicable set of edits; memory is unchanged."""


@dataclass(frozen=True)
class MemoryEdit:
    op: str  # "add", "replace" or "remove"
    text: str = ""  # add: the new fact; replace: the new text
    old: str = ""  # replace/remove: the exact text in memory

    def describe(self) -> str:
        """One line for the revision note: `add: …`, `replace: … -> …`, `remove: …`."""
        if self.op == "add":
            return f"add: {self.text}"
        if self.op == "replace":
            return f"replace: {self.old} -> {self.text}"
        return f"remove: {self.old}"

    def as_dict(self) -> dict[str, str]:
        if self.op == "add":
            return {"op": "add", "text": self.text}
        if self.op == "replace":
            return {"op": "replace", "old": self.old, "new": self.text}
        return {"op": "remove", "old": self.old}


def consolidation_messages(
    *,
    instance_name: str,
    description: str,
    language: str,
    memory: str,
    summary: str,
    turns: Sequence[Turn],
    max_chars: int,
    remembered: int = 0,
) -> list[dict[str, str]]:
    """Ask for edits (JSON only) that record what the character should remember. The first
    `remembered` turns were consolidated before (the conversation was continued after it
    ended): they are shown as context, marked as already in the memory."""
    earlier = f"Summary of earlier parts:\n{summary.strip()}\n\n" if summary.strip() else ""
    old, new = turns[:remembered], turns[remembered:]
    if old:
        earlier += (
            "Earlier in this conversation (already reflected in the memory; do not record it "
            f"again):\n{_transcript(old)}\n\n"
        )
    heading = "New since then" if old else "Conversation"
    return [
        {
            "role": "system",
            "content": (
                f"You maintain the long-term memory of {instance_name}, an AI character "
                f"({description.strip()[:300]}). Read the conversation and propose small edits "
                "to the memory: add a fact the character should remember (who the user is, "
                "names, preferences, promises, feelings), replace a fact that changed, or "
                "remove one that is no longer true. Never rewrite the memory; leave every "
                "other fact alone. Skip small talk. Facts are short plain sentences in "
                f"{language_name(language)}, at most {FACT_MAX_CHARS} characters each; the "
                f"whole memory stays under {max_chars} characters. For replace and remove, "
                '"old" is copied exactly from the memory. Answer with JSON only, e.g. '
                '{"edits": [{"op": "add", "text": "..."}, '
                '{"op": "replace", "old": "...", "new": "..."}, '
                '{"op": "remove", "old": "..."}]}. '
                'If nothing should change, answer {"edits": []}.'
            ),
        },
        {
            "role": "user",
            "content": (
                f"Current memory:\n{memory.strip() or '(empty)'}\n\n"
                f"{earlier}{heading}:\n{_transcript(new)}"
            ),
        },
    ]


def _transcript(turns: Sequence[Turn]) -> str:
    return "\n".join(f"{turn.role}: {turn.text}" for turn in turns)


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_edits(answer: str) -> list[MemoryEdit]:
    """The edits in the model's answer (a code fence around the JSON is allowed)."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadEdits(f"not JSON: {_preview(answer)}") from exc
    if not isinstance(data, dict) or set(data) != {"edits"} or not isinstance(data["edits"], list):
        raise BadEdits(f'not an object with only an "edits" list: {_preview(answer)}')
    if len(data["edits"]) > MAX_EDITS:
        raise BadEdits(f"{len(data['edits'])} edits; at most {MAX_EDITS} per conversation")
    return [_edit(index, item) for index, item in enumerate(data["edits"])]


def _edit(index: int, item: object) -> MemoryEdit:
    where = f"edit {index}"
    if not isinstance(item, dict):
        raise BadEdits(f"{where} is not an object")
    op = item.get("op")
    fields = {"add": {"op", "text"}, "replace": {"op", "old", "new"}, "remove": {"op", "old"}}
    if op not in fields:
        raise BadEdits(f"{where}: op must be one of {', '.join(OPS)}")
    if set(item) != fields[op]:
        raise BadEdits(f"{where}: a {op} edit has exactly the fields {sorted(fields[op])}")
    values = {key: item[key] for key in fields[op] - {"op"}}
    for key, value in values.items():
        if not isinstance(value, str) or not value.strip():
            raise BadEdits(f"{where}: {key} must be non-empty text")
    for key in ("text", "new"):
        if key in values and (len(values[key]) > FACT_MAX_CHARS or "\n" in values[key].strip()):
            raise BadEdits(
                f"{where}: {key} must be one fact of at most {FACT_MAX_CHARS} characters"
            )
    if op == "add":
        return MemoryEdit("add", text=values["text"].strip())
    if op == "replace":
        return MemoryEdit("replace", text=values["new"].strip(), old=values["old"].strip())
    return MemoryEdit("remove", old=values["old"].strip())


def apply_edits(
    memory: str, edits: Sequence[MemoryEdit], max_chars: int
) -> list[tuple[MemoryEdit, str]]:
    """Each edit that changes something, with the memory after it, in order (an `add` of a fact
    already there is left out). Raises `BadEdits` (nothing applies) if any edit cannot apply."""
    states: list[tuple[MemoryEdit, str]] = []
    current = memory
    for index, edit in enumerate(edits):
        if edit.op == "add":
            if edit.text in current:
                continue
            updated = f"{current.rstrip()}\n{edit.text}" if current.strip() else edit.text
        else:
            count = current.count(edit.old)
            if count != 1:
                found = "not in memory" if count == 0 else f"in memory {count} times"
                raise BadEdits(f"edit {index} ({edit.op}): the old text is {found}: {edit.old!r}")
            if edit.op == "replace":
                updated = current.replace(edit.old, edit.text, 1)
            else:
                updated = _remove(current, edit.old)
        if len(updated) > max_chars:
            raise BadEdits(
                f"edit {index} makes memory {len(updated)} characters (limit {max_chars})"
            )
        states.append((edit, updated))
        current = updated
    return states


def _remove(memory: str, old: str) -> str:
    """`memory` without `old`, joining what was around it without doubled spaces or blank lines."""
    start = memory.index(old)
    before, after = memory[:start], memory[start + len(old) :]
    before_line_end = before.rstrip(" \t")
    after_line_start = after.lstrip(" \t")
    if (not before_line_end or before_line_end.endswith("\n")) and (
        not after_line_start or after_line_start.startswith("\n")
    ):
        # `old` was a whole line: drop the line.
        return (before_line_end + after_line_start.removeprefix("\n")).strip("\n")
    joiner = (
        " " if before_line_end and after_line_start and after_line_start[0] not in ".,;" else ""
    )
    if before_line_end.endswith("\n") or after_line_start.startswith("\n"):
        joiner = ""
    return before_line_end + joiner + after_line_start


def _preview(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "…")
