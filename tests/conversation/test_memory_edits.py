"""Memory consolidation by edits (issue 15.1) and its failure isolation (issue 14.16)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import AsyncClient
from django.utils import timezone

from characters.memory import BadEdits, MemoryEdit, apply_edits, parse_edits
from characters.models import CharacterInstance, Conversation, MemoryRevision, Message
from conversation.memory import consolidate_idle, memory_consolidate
from conversation.models import ConversationState
from conversation.observe import group_for
from tests.fake_openai import Failure, Reply

ROOT = Path(__file__).resolve().parent.parent.parent
MEMORY = "Commands the starship Lumen.\nHer first officer is a robot named Bolt."


# Pure: parsing and applying --------------------------------------------------------------------


def test_well_formed_edits_apply_in_order_and_keep_every_other_fact():
    edits = parse_edits(
        "```json\n"
        + json.dumps(
            {
                "edits": [
                    {"op": "add", "text": "The user is Ana, a pilot."},
                    {"op": "replace", "old": "a robot named Bolt", "new": "an android named Bolt"},
                    {"op": "remove", "old": "Commands the starship Lumen."},
                    {"op": "add", "text": "The user is Ana, a pilot."},  # already there: no-op
                ]
            }
        )
        + "\n```"
    )
    assert [e.op for e in edits] == ["add", "replace", "remove", "add"]
    states = apply_edits(MEMORY, edits, 500)
    assert [edit.op for edit, _ in states] == ["add", "replace", "remove"]
    assert states[0][1] == MEMORY + "\nThe user is Ana, a pilot."
    assert states[-1][1] == (
        "Her first officer is an android named Bolt.\nThe user is Ana, a pilot."
    )
    assert apply_edits("", [MemoryEdit("add", text="Likes tea.")], 50) == [
        (MemoryEdit("add", text="Likes tea."), "Likes tea.")
    ]
    # Removing a sentence inside a line joins the rest with one space.
    inline = apply_edits(
        "Likes tea. Hates rain. Has a cat.", [MemoryEdit("remove", old="Hates rain.")], 99
    )
    assert inline[0][1] == "Likes tea. Has a cat."


@pytest.mark.parametrize(
    "answer, why",
    [
        ("Commands the starship Lumen. Bolt said: hello captain!", "not JSON"),
        ('{"memory": "Everything new"}', '"edits" list'),
        ('{"edits": [], "memory": "x"}', '"edits" list'),
        ('{"edits": {"op": "add"}}', '"edits" list'),
        ('{"edits": ["add a fact"]}', "not an object"),
        ('{"edits": [{"op": "rewrite", "text": "x"}]}', "op must be"),
        ('{"edits": [{"op": "add"}]}', "exactly the fields"),
        ('{"edits": [{"op": "add", "text": ""}]}', "non-empty"),
        ('{"edits": [{"op": "add", "text": 7}]}', "non-empty"),
        ('{"edits": [{"op": "replace", "old": "Bolt", "text": "Rex"}]}', "exactly the fields"),
        ('{"edits": [{"op": "add", "text": "' + "x" * 301 + '"}]}', "one fact"),
        ('{"edits": [{"op": "add", "text": "one\\ntwo"}]}', "one fact"),
        (json.dumps({"edits": [{"op": "add", "text": f"f{i}"} for i in range(9)]}), "at most 8"),
    ],
)
def test_malformed_answers_are_rejected_with_a_reason(answer, why):
    with pytest.raises(BadEdits, match=why):
        parse_edits(answer)


@pytest.mark.parametrize(
    "edit, why",
    [
        (MemoryEdit("replace", text="x", old="Captain of nothing"), "not in memory"),
        (MemoryEdit("remove", old="e"), "in memory [0-9]+ times"),
        (MemoryEdit("add", text="y" * 200), "limit 120"),
    ],
)
def test_edits_that_do_not_apply_reject_the_whole_set(edit, why):
    with pytest.raises(BadEdits, match=why):
        apply_edits(MEMORY[:120], [MemoryEdit("add", text="ok."), edit], 120)


# With the model (the fake OpenAI server) -------------------------------------------------------


@pytest.fixture
def nova(user, make_instance):
    return make_instance(user, name="nova", memory=MEMORY)


def ended_conversation(instance, user, *texts: str) -> Conversation:
    conversation = Conversation.objects.create(
        instance=instance, owner=user, ended_at=timezone.now()
    )
    for text in texts:
        Message.objects.create(conversation=conversation, role="user", text=text)
        Message.objects.create(conversation=conversation, role="assistant", text="I see.")
    return conversation


async def revisions(instance) -> list[MemoryRevision]:
    return await sync_to_async(list)(
        MemoryRevision.objects.filter(instance=instance).order_by("id")
    )


async def memory_of(instance) -> str:
    return (await CharacterInstance.objects.aget(pk=instance.pk)).memory


BAD_ANSWERS = [
    "Captain: Bolt, status report! Bolt: All systems nominal, captain.",  # invented dialogue
    '{"memory": "Le gusta el té. Le gusta el té. Le gusta el té."}',
    '{"edits": [{"op": "replace", "old": "Captain Nova", "new": "x"}]}',  # names no real fact
    '{"edits": [{"op": "add", "text": "' + "z" * 290 + '"}]}',  # over MEMORY_MAX_CHARS
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("answer", BAD_ANSWERS)
async def test_bad_model_output_leaves_memory_unchanged_and_logs_why(
    fake_openai, user, nova, settings, caplog, answer
):
    settings.MEMORY_MAX_CHARS = 300
    conversation = await sync_to_async(ended_conversation)(nova, user, "I am Ana, a pilot.")
    fake_openai.script(answer)
    with caplog.at_level(logging.WARNING, logger="conversation.memory"):
        result = await memory_consolidate(instance_id=nova.pk)
    assert await memory_of(nova) == MEMORY
    assert await revisions(nova) == []
    assert result.conversations == 0 and result.failed[0]["error"].startswith("bad_edits: ")
    [record] = [r for r in caplog.records if r.name == "conversation.memory"]
    assert "memory unchanged" in record.getMessage() and "bad_edits: " in record.getMessage()
    assert str(conversation.pk) in record.getMessage()
    assert record.exc_info is None  # A reason, not a traceback.
    # The model was asked for edits, with the memory and the conversation.
    request = fake_openai.chat_requests[-1]
    assert '{"edits"' in request.system and "I am Ana, a pilot." in request.messages[-1]["content"]


@pytest.mark.django_db(transaction=True)
async def test_a_good_edit_applies_with_a_revision_per_change(fake_openai, user, nova):
    conversation = await sync_to_async(ended_conversation)(
        nova, user, "I am Ana, a pilot.", "Bolt was upgraded: he is an android now."
    )
    fake_openai.script(
        json.dumps(
            {
                "edits": [
                    {"op": "add", "text": "The user is Ana, a pilot."},
                    {"op": "replace", "old": "a robot named Bolt", "new": "an android named Bolt"},
                ]
            }
        )
    )
    result = await memory_consolidate(instance_id=nova.pk)
    expected = (
        "Commands the starship Lumen.\nHer first officer is an android named Bolt.\n"
        "The user is Ana, a pilot."
    )
    assert result.conversations == 1 and result.failed == [] and result.memory == expected
    assert await memory_of(nova) == expected
    first, second = await revisions(nova)
    assert first.text == MEMORY and first.source == "consolidation"
    assert first.note == f"Conversation {conversation.pk}: add: The user is Ana, a pilot."
    assert second.text == MEMORY + "\nThe user is Ana, a pilot."
    assert "replace: a robot named Bolt -> an android named Bolt" in second.note
    assert result.revision_id == second.pk
    state = await ConversationState.objects.aget(conversation=conversation)
    assert state.consolidated_at is not None and state.consolidation_attempts == 0
    # Nothing new: no model call, no revision.
    before = len(fake_openai.chat_requests)
    assert (await memory_consolidate(instance_id=nova.pk)).conversations == 0
    assert len(fake_openai.chat_requests) == before


@pytest.mark.django_db(transaction=True)
async def test_a_continued_conversation_is_consolidated_for_what_is_new(fake_openai, user, nova):
    """Reopened after its consolidation (the history page, or a live session past the idle
    sweep): the next pass shows the earlier turns as already remembered and asks about the new."""
    from characters import services

    conversation = await sync_to_async(ended_conversation)(nova, user, "I am Ana, a pilot.")
    fake_openai.script(json.dumps({"edits": [{"op": "add", "text": "The user is Ana."}]}))
    assert (await memory_consolidate(instance_id=nova.pk)).conversations == 1
    await sync_to_async(services.conversation_reopen)(conversation=conversation)
    await Message.objects.acreate(conversation=conversation, role="user", text="I have a cat.")
    await Message.objects.acreate(conversation=conversation, role="assistant", text="Nice.")
    await Conversation.objects.filter(pk=conversation.pk).aupdate(ended_at=timezone.now())
    fake_openai.script(json.dumps({"edits": [{"op": "add", "text": "Ana has a cat."}]}))
    result = await memory_consolidate(instance_id=nova.pk)
    assert result.conversations == 1
    prompt = fake_openai.chat_requests[-1].messages[-1]["content"]
    earlier, new = prompt.split("New since then:\n")
    assert "already reflected in the memory" in earlier and "user: I am Ana, a pilot." in earlier
    assert new == "user: I have a cat.\nassistant: Nice."
    assert await memory_of(nova) == MEMORY + "\nThe user is Ana.\nAna has a cat."


@pytest.mark.django_db(transaction=True)
async def test_one_failing_conversation_does_not_block_the_others(
    fake_openai, user, nova, settings, caplog
):
    """Issue 14.16: isolate failures, back off, one log line per failure, no traceback storm."""
    settings.MEMORY_RETRY_SECONDS = 600
    settings.LLM_RETRIES = 0
    stuck = await sync_to_async(ended_conversation)(nova, user, "Something odd.")
    good = await sync_to_async(ended_conversation)(nova, user, "My name is Ana.")
    fake_openai.script(
        Failure(500),  # `stuck` (oldest first) fails...
        '{"edits": [{"op": "add", "text": "The user is Ana."}]}',  # ...`good` goes on.
    )
    with caplog.at_level(logging.WARNING, logger="conversation.memory"):
        assert await consolidate_idle(end_idle=False) == 1
    assert (await memory_of(nova)).endswith("\nThe user is Ana.")
    good_state = await ConversationState.objects.aget(conversation=good)
    assert good_state.consolidated_at is not None and good_state.consolidation_attempts == 0
    state = await ConversationState.objects.aget(conversation=stuck)
    assert state.consolidation_attempts == 1 and state.consolidation_error.startswith("llm_server")
    wait = (state.consolidation_next_at - timezone.now()).total_seconds()
    assert 500 < wait <= 600
    # The next sweeps leave `stuck` alone while it backs off: no model call, no log line.
    before = len(fake_openai.chat_requests)
    for _ in range(5):
        assert await consolidate_idle(end_idle=False) == 0
    assert len(fake_openai.chat_requests) == before
    # Its time comes: it is tried again, fails again, and waits twice as long.
    await ConversationState.objects.filter(conversation=stuck).aupdate(
        consolidation_next_at=timezone.now()
    )
    fake_openai.script("not json at all")
    with caplog.at_level(logging.WARNING, logger="conversation.memory"):
        assert await consolidate_idle(end_idle=False) == 1
    state = await ConversationState.objects.aget(conversation=stuck)
    assert state.consolidation_attempts == 2 and state.consolidation_error.startswith("bad_edits")
    assert 1100 < (state.consolidation_next_at - timezone.now()).total_seconds() <= 1200
    failures = [r for r in caplog.records if r.name == "conversation.memory"]
    assert len(failures) == 2 and all(r.exc_info is None for r in failures)
    assert all(r.levelno == logging.WARNING for r in failures)
    # An explicit request still tries it (and reports the failure instead of raising).
    fake_openai.script("still not json")
    result = await memory_consolidate(instance_id=nova.pk, include_open=True)
    assert len(result.failed) == 1
    assert result.failed[0]["conversation_id"] == str(stuck.pk)
    assert result.failed[0]["error"].startswith("bad_edits: not JSON")


@pytest.mark.django_db(transaction=True)
async def test_consolidation_events_reach_the_instance_observers(fake_openai, user, nova):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group_for(nova.pk), channel)
    await sync_to_async(ended_conversation)(nova, user, "I am Ana.")
    fake_openai.script('{"edits": [{"op": "add", "text": "The user is Ana."}]}')
    result = await memory_consolidate(instance_id=nova.pk)
    event = (await layer.receive(channel))["event"]
    assert event == {
        "type": "memory.updated",
        "instance_id": str(nova.pk),
        "conversation_id": event["conversation_id"],
        "revision_id": result.revision_id,
        "edits": [{"op": "add", "text": "The user is Ana."}],
    }
    await sync_to_async(ended_conversation)(nova, user, "More.")
    fake_openai.script("nonsense")
    await memory_consolidate(instance_id=nova.pk)
    failed = (await layer.receive(channel))["event"]
    assert failed["type"] == "memory.consolidation_failed"
    assert failed["error"].startswith("bad_edits: not JSON")


# Off by default with the local engine ----------------------------------------------------------


def settings_probe(**env: str) -> dict:
    code = (
        "import json, django; from django.conf import settings; django.setup();"
        "from conversation.memory import consolidation_status;"
        "print(json.dumps(consolidation_status()))"
    )
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLM_", "OPENAI_", "MEMORY_", "DATABASE_URL", "REDIS_URL"))
    }
    clean.update(DJANGO_SETTINGS_MODULE="realtime.settings", **env)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_consolidation_is_off_by_default_with_the_local_engine_and_says_why(tmp_path):
    env_file = str(tmp_path / ".env")
    local = settings_probe(VOZ_ENV_FILE=env_file, LLM_ENGINE="local")
    assert local["consolidation"] is False and "local engine" in local["reason"]
    assert settings_probe(VOZ_ENV_FILE=env_file, LLM_ENGINE="openai") == {"consolidation": True}
    forced = settings_probe(VOZ_ENV_FILE=env_file, LLM_ENGINE="local", MEMORY_CONSOLIDATION="true")
    assert forced == {"consolidation": True}


@pytest.mark.django_db
async def test_readyz_shows_whether_memory_consolidation_runs(settings):
    settings.LLM_ENGINE = "local"
    settings.MEMORY_CONSOLIDATION = False
    body = (await AsyncClient().get("/readyz")).json()
    assert body["details"]["memory"]["consolidation"] is False
    assert "local engine" in body["details"]["memory"]["reason"]


@pytest.mark.django_db(transaction=True)
async def test_consolidate_endpoint_reports_failures_and_keeps_memory(
    fake_openai, user, token, nova
):
    conversation = await sync_to_async(ended_conversation)(nova, user, "I am Ana.")
    fake_openai.script("Sure! Here is the new memory: Ana, Ana, Ana.")
    response = await AsyncClient().post(
        f"/api/instances/{nova.id}/memory/consolidate",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["conversations"] == 0 and body["memory"] == MEMORY
    assert body["failed"] == [
        {"conversation_id": str(conversation.pk), "error": body["failed"][0]["error"]}
    ]
    assert body["failed"][0]["error"].startswith("bad_edits: not JSON")


# Fitting a long transcript into the model's context ------------------------------------------


def linear_fit(turns, render, budget, counter):
    """The rule as first written: drop the oldest turn until the rendered messages fit."""
    from characters.prompt import message_tokens

    kept = list(turns)
    while kept and sum(message_tokens(m["content"], counter) for m in render(kept)) > budget:
        kept.pop(0)
    return kept


@pytest.mark.parametrize("budget", [0, 40, 300, 1_000, 5_000, 100_000])
def test_the_newest_turns_that_fit_are_kept_in_few_renders(budget):
    from characters.tokens import TokenCounter
    from conversation.memory import newest_that_fit

    turns = [f"turn {i}: " + "word " * (i % 7 * 5 + 1) for i in range(200)]
    renders = []

    def render(kept):
        renders.append(len(kept))
        return [{"role": "system", "content": "Update the memory."}, {"content": "\n".join(kept)}]

    counter = TokenCounter(1.0)
    kept = newest_that_fit(turns, render, budget, counter)
    assert len(renders) <= 8  # ⌈log2(201)⌉ renders, where dropping one by one took up to 200
    assert kept == linear_fit(turns, render, budget, counter)
    assert kept == turns[len(turns) - len(kept) :]  # the newest, in order


@pytest.mark.django_db(transaction=True)
async def test_a_long_conversation_is_consolidated_from_its_newest_turns(
    fake_openai, user, nova, settings
):
    from characters.prompt import message_tokens

    settings.LLM_CONTEXT_TOKENS = 1_200  # 1,200 − 512 for the answer − 16: 672 for the prompt
    texts = [
        f"Entry {i:03d} of the log: " + "the engines hum and the stars drift. " * 4
        for i in range(60)
    ]
    await sync_to_async(ended_conversation)(nova, user, *texts)
    fake_openai.script(json.dumps({"edits": [{"op": "add", "text": "The user keeps a log."}]}))
    assert (await memory_consolidate(instance_id=nova.pk)).conversations == 1
    messages = fake_openai.chat_requests[-1].messages
    prompt = messages[-1]["content"]
    assert "Entry 059" in prompt and "Entry 000" not in prompt  # the newest kept, the oldest not
    assert sum(message_tokens(m["content"]) for m in messages) <= 1_200 - 512 - 16
    assert await memory_of(nova) == MEMORY + "\nThe user keeps a log."


# The per-user model budget of an explicit consolidation (issue 21, red team C) -----------------


@pytest.mark.django_db(transaction=True)
async def test_consolidate_endpoint_spends_the_turn_budget_one_model_request_each(
    fake_openai, user, token, nova, settings
):
    """Each conversation is one model request, counted in WS_TURNS_PER_MINUTE with chat and
    voice turns; one backing off comes after those that are due; past the budget the rest are
    deferred, then 429 with Retry-After and no model request; the operator's command is not
    limited."""
    from django.core.management import call_command

    settings.WS_TURNS_PER_MINUTE = 3
    settings.MEMORY_CONSOLIDATION = False
    stuck = await sync_to_async(ended_conversation)(nova, user, "Something odd.")
    await ConversationState.objects.acreate(
        conversation=stuck,
        consolidation_attempts=1,
        consolidation_next_at=timezone.now() + timezone.timedelta(seconds=600),
        consolidation_error="bad_edits: not JSON",
    )
    for name in ("Ana", "Bea", "Cid"):
        await sync_to_async(ended_conversation)(nova, user, f"I know {name}.")
    fake_openai.default_reply = Reply('{"edits": []}')
    url = f"/api/instances/{nova.id}/memory/consolidate"
    auth = {"Authorization": f"Bearer {token}"}
    before = len(fake_openai.chat_requests)
    first = await AsyncClient().post(url, headers=auth)
    assert first.status_code == 200, first.content
    assert first.json()["conversations"] == 3 and first.json()["deferred"] == 1
    assert first.json()["failed"] == []
    assert len(fake_openai.chat_requests) - before == 3
    assert "Something odd." not in "".join(
        r.messages[-1]["content"] for r in fake_openai.chat_requests
    )
    for _ in range(3):
        refused = await AsyncClient().post(url, headers=auth)
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused["Retry-After"]) <= 60
    assert len(fake_openai.chat_requests) - before == 3
    # The same budget as chat: a chat turn is refused too.
    chat = await AsyncClient().post(
        f"/api/instances/{nova.id}/chat",
        json.dumps({"text": "hi"}),
        content_type="application/json",
        headers=auth,
    )
    assert chat.status_code == 429
    # The operator's command is not counted: it consolidates what is left.
    await sync_to_async(call_command, thread_sensitive=False)("consolidate_memory", "nova")
    assert len(fake_openai.chat_requests) - before == 4
    state = await ConversationState.objects.aget(conversation=stuck)
    assert state.consolidated_at is not None


@pytest.mark.django_db(transaction=True)
async def test_consolidate_endpoint_with_nothing_to_do_is_not_refused(
    fake_openai, user, token, nova, settings
):
    settings.WS_TURNS_PER_MINUTE = 1
    await sync_to_async(ended_conversation)(nova, user, "I am Ana.")
    fake_openai.default_reply = Reply('{"edits": []}')
    url = f"/api/instances/{nova.id}/memory/consolidate"
    auth = {"Authorization": f"Bearer {token}"}
    assert (await AsyncClient().post(url, headers=auth)).json()["conversations"] == 1
    again = await AsyncClient().post(url, headers=auth)  # nothing left: no model request
    assert again.status_code == 200 and again.json()["deferred"] == 0
