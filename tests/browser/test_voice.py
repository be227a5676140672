"""Voice chat end to end in a real Chromium: fake microphone → daphne (/ws/voice/) → STT → the
model (a fake OpenAI-compatible server) → TTS → the page's playback queue."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import (
    SPOKEN,
    api_get,
    fake_llm_env,
    open_talk_page,
    running_server,
    screenshot,
)

SPOKEN_REPLY = "Hello, visitor! A nebula is a cloud of gas and dust in space."
TYPED_REPLY = "Nebulae are clouds of gas. Stars are born inside them."
LONG_REPLY = " ".join(
    [
        "Let me tell you a long story about the starship Lumen.",
        "We left the harbour of Titan on a quiet morning.",
        "Bolt checked every engine twice, as he always does.",
        "Then a comet crossed our path and lit the whole bridge.",
        "We followed its tail for three days and three nights.",
        "At the end we found a nebula shaped like a rose.",
        "Nobody on Earth had ever seen it before.",
    ]
)


@pytest.fixture(autouse=True)
def fresh_fake_llm(fake_llm):
    """Each test starts with no queued replies and the default answer."""
    fake_llm.reset()
    yield


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_llm):
    with running_server(tmp_path_factory.mktemp("voice"), fake_llm_env(fake_llm)) as served:
        yield served


def playback_events(page: Page, response_id: str) -> list[dict]:
    return page.evaluate(
        "(id) => window.vozEvents.filter((event) => event.response_id === id)", response_id
    )


def states(page: Page) -> list[str]:
    """The character's states as shown, in order, without repeats."""
    return page.evaluate("window.vozStates.map((entry) => entry.state)")


def in_order(sequence: list[str], wanted: list[str]) -> bool:
    """`wanted` appears in `sequence` in this order (other states may come between)."""
    position = 0
    for state in sequence:
        if position < len(wanted) and state == wanted[position]:
            position += 1
    return position == len(wanted)


def last_user_text(fake_llm) -> str:
    messages = fake_llm.requests[-1].messages
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def spoken_words(text: str) -> set[str]:
    return set(re.sub(r"[^\w\s']", " ", text.lower()).split())


def speak_the_sentence(browser: Browser, server: dict, attempts: int = 3) -> tuple[Page, str]:
    """A talk page whose fake microphone said SPOKEN as one turn, and that turn's transcript.

    Chromium's fake capture device feeds the page on a timer; when that thread stalls, the
    page's audio graph fills the gap with silence, and the server rightly ends the turn there.
    CI saw the first turn cut short twice ("Hello Captain, what is..." once, with the rest as a
    second turn; once with no second turn within 20 s). That is the capture path, not the
    server: such an attempt is recorded and the sentence is spoken again on a new page; every
    attempt cut short fails with what each one heard.
    """
    wanted = spoken_words(SPOKEN)
    heard: list[list[str]] = []
    for _ in range(attempts):
        page = open_talk_page(browser, server)
        page.get_by_role("button", name="Start microphone").click()
        users = page.locator("#log .msg.user")
        expect(users.first).to_be_visible(timeout=40000)
        transcript = users.first.locator(".text").inner_text().strip()
        if len(wanted & spoken_words(transcript)) >= 5:
            return page, transcript
        page.wait_for_timeout(5000)  # what came after it, for the failure message
        heard.append([text.strip() for text in users.locator(".text").all_inner_texts()])
        print(f"the capture cut the sentence short: {heard[-1]!r}")
        page.close()
    pytest.fail(f"The sentence was cut short in every attempt; the turns heard: {heard!r}")


def test_talk_with_the_microphone_hears_the_reply(browser, server, fake_llm):
    from tests.fake_openai import Reply

    # Every request gets this reply: a pause mid-sentence may start a preemptive reply that is
    # dropped when the final transcript differs, and it must not use up a one-off script.
    fake_llm.default_reply = Reply(SPOKEN_REPLY, token_delay=0.08)
    page, transcript = speak_the_sentence(browser, server)
    assert float(page.locator("#voz-app").get_attribute("data-input-level")) > 0.01
    assert int(page.locator("#voz-app").get_attribute("data-frames-sent")) > 10

    reply = page.locator("#log .msg.assistant").first
    expect(reply.locator(".text")).not_to_be_empty(timeout=20000)
    # The reply streams, so its request was made (the transcript shows before it is).
    assert last_user_text(fake_llm) == transcript  # what was recognised is what the model got
    screenshot(page, "voice-mid-conversation.png")
    expect(reply).to_have_attribute("data-state", "done", timeout=30000)
    expect(reply.locator(".text")).to_have_text(SPOKEN_REPLY)
    assert int(reply.get_attribute("data-deltas")) > 3  # streamed, not delivered at once

    response_id = reply.get_attribute("data-response-id")
    page.wait_for_function(
        "(id) => window.vozEvents.filter((e) => e.type === 'playback.end'"
        " && e.response_id === id).length >= 2",
        arg=response_id,
        timeout=30000,
    )
    events = playback_events(page, response_id)
    starts = [e for e in events if e["type"] == "playback.start"]
    ends = [e for e in events if e["type"] == "playback.end"]
    assert [e["index"] for e in starts] == [0, 1]
    assert [e["index"] for e in ends] == [0, 1]
    # Back to back: the second sentence starts when the first one ends (no gap, no overlap),
    # or, when its audio came later than that (a loaded machine), as soon as it came.
    queued = [e for e in events if e["type"] == "playback.queued"]
    assert [e["index"] for e in queued] == [0, 1]
    assert abs(starts[1]["t"] - max(ends[0]["t"], queued[1]["t"])) < 150
    assert not [e for e in events if e["type"] == "playback.stopped"]
    expect(reply.locator(".latency")).to_contain_text("ms", timeout=10000)
    screenshot(page, "voice-after-reply.png")

    # The character showed what it was doing: listening, thinking, speaking, listening again.
    expect(page.locator("#voz-app")).to_have_attribute("data-presence", "listening")
    expect(page.locator("#presence")).to_have_text("Captain Nova is listening")
    assert in_order(states(page), ["listening", "thinking", "speaking", "listening"]), states(page)
    page.close()  # its microphone and session stop here, not during the next tests


def test_type_a_message_and_get_the_reply(browser, server, fake_llm):
    from tests.fake_openai import Reply

    fake_llm.script(Reply(TYPED_REPLY, token_delay=0.02))
    page = open_talk_page(browser, server)
    page.get_by_label("Type instead").fill("What is a nebula?")
    page.get_by_label("Type instead").press("Enter")

    expect(page.locator("#log .msg.user .text")).to_have_text(["What is a nebula?"])
    reply = page.locator("#log .msg.assistant").first
    expect(reply).to_have_attribute("data-state", "done", timeout=30000)
    expect(reply.locator(".text")).to_have_text(TYPED_REPLY)
    assert last_user_text(fake_llm) == "What is a nebula?"

    # The conversation is in the instance's history, with both messages.
    expect(page.locator("#voz-app")).to_have_attribute("data-conversation", re.compile(".+"))
    conversation_id = page.locator("#voz-app").get_attribute("data-conversation")
    page.locator("#history summary").click()
    page.locator(f"button[data-conversation-id='{conversation_id}']").click()
    expect(page.locator("#history-messages li")).to_have_text(["What is a nebula?", TYPED_REPLY])


def start_long_reply(browser: Browser, server: dict):
    """Type a request and wait until the (scripted, long) reply's audio is playing."""
    page = open_talk_page(browser, server)
    page.get_by_label("Type instead").fill("Tell me a long story.")
    page.get_by_label("Type instead").press("Enter")
    reply = page.locator("#log .msg.assistant").first
    expect(reply).to_be_visible(timeout=30000)
    response_id = reply.get_attribute("data-response-id")
    page.wait_for_function(
        "(id) => window.vozEvents.some((e) => e.type === 'playback.start' && e.response_id === id)",
        arg=response_id,
        timeout=30000,
    )
    return page, reply, response_id


def test_stop_button_interrupts_the_reply(browser, server, fake_llm):
    from tests.fake_openai import Reply

    fake_llm.script(Reply(LONG_REPLY, token_delay=0.05))
    page, reply, response_id = start_long_reply(browser, server)
    expect(page.get_by_role("button", name="Stop reply")).to_be_enabled()
    page.get_by_role("button", name="Stop reply").click()

    expect(reply).to_have_attribute("data-state", "interrupted", timeout=15000)
    stopped = [e for e in playback_events(page, response_id) if e["type"] == "playback.stopped"]
    assert len(stopped) == 1
    assert in_order(states(page), ["thinking", "speaking", "interrupted"]), states(page)
    expect(page.locator("#voz-app")).to_have_attribute("data-presence", "idle", timeout=5000)
    time.sleep(1.5)  # late audio of the cancelled response must not play
    events = playback_events(page, response_id)
    assert not [e for e in events if e["type"] == "playback.start" and e["t"] > stopped[0]["t"]]
    assert events[-1]["type"] == "playback.stopped"

    expect(page.locator("#voz-app")).to_have_attribute("data-conversation", re.compile(".+"))
    conversation_id = page.locator("#voz-app").get_attribute("data-conversation")
    messages = api_get(
        server["base"], server["token"], f"/api/conversations/{conversation_id}/messages"
    )["items"]
    assistant = [m for m in messages if m["role"] == "assistant"][-1]
    assert assistant["interrupted"] is True
    # Stored is what was heard: the first sentence(s), not the whole story.
    assert assistant["text"].startswith("Let me tell you a long story")
    assert len(assistant["text"]) < len(LONG_REPLY)


def test_speaking_over_the_reply_stops_it(browser, server, fake_llm):
    from tests.fake_openai import Reply

    fake_llm.script(Reply(LONG_REPLY, token_delay=0.05), Reply(SPOKEN_REPLY))
    page, reply, response_id = start_long_reply(browser, server)

    page.get_by_role("button", name="Start microphone").click()  # the visitor starts talking
    page.wait_for_function(
        "(id) => window.vozEvents.some((e) => e.type === 'playback.stopped' && e.response_id === id)",
        arg=response_id,
        timeout=40000,
    )
    expect(reply).to_have_attribute("data-state", "interrupted", timeout=15000)
    # The words that interrupted become the next turn.
    expect(page.locator("#log .msg.user")).to_have_count(2, timeout=30000)
    ends = [e for e in playback_events(page, response_id) if e["type"] == "playback.end"]
    assert len(ends) < len(LONG_REPLY.split(". "))  # not every sentence was heard


def type_and_wait(page: Page, text: str, count: int) -> None:
    page.get_by_label("Type instead").fill(text)
    page.get_by_label("Type instead").press("Enter")
    expect(page.locator("#log .msg.assistant")).to_have_count(count, timeout=30000)
    expect(page.locator("#log .msg.assistant").last).to_have_attribute(
        "data-state", "done", timeout=30000
    )


def test_history_newest_first_and_continue_a_past_conversation(browser, server, fake_llm):
    from tests.fake_openai import Reply

    # One answer for every request: ending a conversation also asks the model (its memory).
    fake_llm.default_reply = Reply("A fine answer.")
    page = open_talk_page(browser, server)
    type_and_wait(page, "Tell me about the first voyage", 1)
    app = page.locator("#voz-app")
    expect(app).to_have_attribute("data-conversation", re.compile(".+"))
    first = app.get_attribute("data-conversation")

    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#log li")).to_have_count(0)
    expect(app).to_have_attribute("data-connection", "open", timeout=30000)
    type_and_wait(page, "Now the second voyage", 1)
    expect(app).not_to_have_attribute("data-conversation", first)
    second = app.get_attribute("data-conversation")

    # Newest first, each titled with its first words.
    page.locator("#history summary").click()
    entries = page.locator("#conversations button.entry")
    expect(entries.locator(".title").first).to_have_text("Now the second voyage")
    titles = entries.locator(".title").all_inner_texts()
    assert titles.index("Now the second voyage") < titles.index("Tell me about the first voyage")
    expect(page.locator(f"button[data-conversation-id='{second}']")).to_have_attribute(
        "aria-current", "true"
    )

    # Reopen the first one and continue it from the page.
    page.locator(f"button[data-conversation-id='{first}']").click()
    expect(page.locator("#history-messages li")).to_have_text(
        ["Tell me about the first voyage", "A fine answer."]
    )
    page.get_by_role("button", name="Continue this conversation").click()
    expect(app).to_have_attribute("data-conversation", first)
    expect(page.locator("#log .msg .text")).to_have_text(
        ["Tell me about the first voyage", "A fine answer."]
    )
    expect(app).to_have_attribute("data-connection", "open", timeout=30000)
    type_and_wait(page, "And then?", 2)
    assert app.get_attribute("data-conversation") == first
    messages = api_get(server["base"], server["token"], f"/api/conversations/{first}/messages")
    assert [m["text"] for m in messages["items"]] == [
        "Tell me about the first voyage",
        "A fine answer.",
        "And then?",
        "A fine answer.",
    ]
    # The continued conversation is the newest again.
    expect(entries.locator(".title").first).to_have_text("Tell me about the first voyage")
    screenshot(page, "page-history-en.png")
