"""`manage.py chat` with piped stdin and `manage.py consolidate_memory`."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from characters.models import Conversation, MemoryRevision, Message
from tests.fake_openai import FakeOpenAI
from tests.servers import ROOT, fake_model_env, prepare_database

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str, stdin: str = "", monkeypatch) -> tuple[str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_chat_command_streams_replies_from_piped_stdin(
    fake_openai, make_user, make_instance, monkeypatch
):
    owner = make_user("alice")
    instance = make_instance(owner, name="Pipe-Luna")
    fake_openai.script(
        "Ahoy, Ana!",
        "Rex is a fine dog.",
        '{"edits": [{"op": "add", "text": "Ana has a dog called Rex."}]}',
    )
    out, _ = run(
        "chat", "pipe-luna", stdin="I am Ana.\n\nMy dog is Rex.\n", monkeypatch=monkeypatch
    )
    assert "Pipe-Luna> Ahoy, Ana!\n" in out
    assert "Pipe-Luna> Rex is a fine dog.\n" in out
    assert "you>" not in out  # No prompt when stdin is not a terminal.
    conversation = Conversation.objects.get(instance=instance)
    assert conversation.channel == "cli" and conversation.ended_at is not None
    assert list(conversation.messages.values_list("role", "text")) == [
        ("user", "I am Ana."),
        ("assistant", "Ahoy, Ana!"),
        ("user", "My dog is Rex."),
        ("assistant", "Rex is a fine dog."),
    ]
    instance.refresh_from_db()
    assert instance.memory == "Ana has a dog called Rex."
    assert MemoryRevision.objects.filter(instance=instance, source="consolidation").count() == 1


def test_commands_close_their_model_connections_before_their_event_loop_ends(tmp_path):
    """Each command runs on an event loop of its own; a model client left open there printed
    "Unclosed client session" / "Unclosed connector" errors after the command's own output."""
    model = FakeOpenAI().start()
    try:
        model.script("Ahoy!", '{"edits": [{"op": "add", "text": "Ana says hi."}]}')
        env = fake_model_env(tmp_path, model)
        prepare_database(env)

        def manage(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "manage.py", *args],
                input=stdin,
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )

        chat = manage("chat", "nova", "--no-consolidate", stdin="Hi, I am Ana.\n")
        consolidate = manage("consolidate_memory", "nova")
    finally:
        model.stop()
    assert chat.returncode == 0 and "Ahoy!" in chat.stdout, chat.stderr[-2000:]
    assert consolidate.returncode == 0 and "1 conversation(s) consolidated" in consolidate.stdout
    assert len(model.chat_requests) == 2  # Each command opened a client.
    assert "Unclosed" not in chat.stderr + consolidate.stderr


def test_chat_command_reports_engine_errors_and_goes_on(
    fake_openai, make_user, make_instance, monkeypatch
):
    owner = make_user("alice")
    make_instance(owner, name="Err-Luna")
    fake_openai.fail(401)
    fake_openai.script("Back again.")
    out, err = run(
        "chat", "Err-Luna", "--no-consolidate", stdin="one\ntwo\n", monkeypatch=monkeypatch
    )
    assert "[llm_auth]" in err
    assert "Err-Luna> Back again." in out
    # --no-consolidate: the conversation ends, memory is not touched (no model call for it).
    assert len(fake_openai.chat_requests) == 2
    assert Conversation.objects.get(instance__name="Err-Luna").ended_at is not None


def test_chat_command_unknown_instance_or_user(make_user, make_instance, monkeypatch):
    with pytest.raises(CommandError, match="No instance named 'nobody'"):
        run("chat", "nobody", monkeypatch=monkeypatch)
    owner = make_user("alice")
    make_user("mallory")
    make_instance(owner, name="Own-Luna")
    with pytest.raises(CommandError, match="may not chat"):
        run("chat", "Own-Luna", "--user", "mallory", monkeypatch=monkeypatch)


def test_consolidate_memory_command(fake_openai, make_user, make_instance, monkeypatch):
    owner = make_user("alice")
    instance = make_instance(owner, name="Cmd-Luna", memory="Old memory.")
    conversation = Conversation.objects.create(instance=instance, owner=owner)
    Message.objects.create(conversation=conversation, role="user", text="I love sailing.")
    fake_openai.script(
        '{"edits": [{"op": "replace", "old": "Old memory.", "new": "The user loves sailing."}]}'
    )
    out, _ = run("consolidate_memory", "Cmd-Luna", monkeypatch=monkeypatch)
    assert "1 conversation(s) consolidated" in out
    instance.refresh_from_db()
    assert instance.memory == "The user loves sailing."
    # The conversation is still open: a sweep without --idle leaves it alone.
    out, _ = run("consolidate_memory", monkeypatch=monkeypatch)
    assert "0 instance(s)" in out
    assert Conversation.objects.get(pk=conversation.pk).ended_at is None


def test_chat_command_refuses_unstorable_lines_and_goes_on(
    fake_openai, make_user, make_instance, monkeypatch
):
    """Undecodable bytes on stdin arrive as lone surrogates (surrogateescape), NUL as itself:
    each such line is refused with the reason, nothing of it stored, and the next is answered."""
    owner = make_user("alice")
    instance = make_instance(owner, name="Pipe-Luna")
    fake_openai.script("Ahoy!")
    stdin = "bad \udcff byte\nnul \x00 here\nHello.\n"
    out, err = run("chat", "pipe-luna", "--no-consolidate", stdin=stdin, monkeypatch=monkeypatch)
    assert "unpaired surrogate" in err and "NUL" in err
    assert "Pipe-Luna> Ahoy!" in out
    assert list(
        Message.objects.filter(conversation__instance=instance).values_list("role", "text")
    ) == [("user", "Hello."), ("assistant", "Ahoy!")]
