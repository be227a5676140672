"""Push-to-talk in a real Chromium: the page asks for manual turns (`turn_detection: null`), sends
audio only while the control is held, and ends the turn with one `input_audio.commit` at release,
however long the pauses while it is held."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import wave

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    _synthesize,
    fake_llm_env,
    launch,
    open_talk_page,
    running_server,
)

# Several plain words each, so one word PocketSphinx mishears (it varies with how the browser
# resampled the audio) cannot decide the test.
FIRST, SECOND = "Good morning, the engines are ready.", "What is a nebula made of?"
PAUSE_S = 3.0  # longer than any end-of-speech silence a recogniser waits for


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_llm):
    env = fake_llm_env(fake_llm, STT_ENGINES="pocketsphinx", MEMORY_CONSOLIDATION="false")
    with running_server(tmp_path_factory.mktemp("ptt"), env) as served:
        yield served


@pytest.fixture(scope="module")
def speech_with_a_pause(tmp_path_factory):
    """6 s of silence, the first sentence, a 3 s pause, the second sentence, 1 s of silence.

    The fake microphone starts playing when the page opens it (on switching to push-to-talk),
    and the test holds Space once the new session is open: the lead-in keeps the first sentence
    after that on a slow machine."""
    folder = tmp_path_factory.mktemp("pause")
    sox = shutil.which("sox")
    if sox is None:
        pytest.fail("sox is needed (apt install sox).")
    parts = []
    for index, text in enumerate([FIRST, SECOND]):
        raw, part = folder / f"raw{index}.wav", folder / f"part{index}.wav"
        _synthesize(text, raw)
        subprocess.run([sox, str(raw), "-r", "16000", "-b", "16", "-c", "1", str(part)], check=True)
        parts.append(part)
    final = folder / "pause.wav"
    silence = folder / "silence.wav"
    subprocess.run(
        [sox, "-n", "-r", "16000", "-b", "16", "-c", "1", str(silence), "trim", "0", str(PAUSE_S)],
        check=True,
    )
    subprocess.run(
        [sox, str(parts[0]), str(silence), str(parts[1]), str(final), "pad", "6", "1"], check=True
    )
    with wave.open(str(final)) as handle:
        assert handle.getnframes() / handle.getframerate() > 2 + PAUSE_S
    return final


@pytest.fixture(scope="module")
def pause_browser(playwright, speech_with_a_pause):
    browser = launch(playwright, speech_with_a_pause)
    yield browser
    browser.close()


def sent_events(frames: list) -> list[dict]:
    events = []
    for frame in frames:
        if isinstance(frame, str):
            events.append(json.loads(frame))
    return events


def open_page(browser, server) -> tuple[Page, list]:
    frames: list = []
    return open_talk_page(browser, server, frames=frames), frames


def test_push_to_talk_asks_for_manual_turns_and_commits_once_at_release(pause_browser, server):
    page, frames = open_page(pause_browser, server)
    starts = [e for e in sent_events(frames) if e["type"] == "session.start"]
    assert starts[-1]["turn_detection"] == {"type": "server_vad"}  # hands-free: the server decides
    conversation = "conversation" in starts[-1]

    page.get_by_label("Push to talk (hold Space)").check()
    app = page.locator("#voz-app")
    page.wait_for_function(  # a second session.start, for the new turn detection
        "() => document.getElementById('voz-app').dataset.connection === 'open'"
    )
    expect(app).to_have_attribute("data-connection", "open", timeout=30000)
    starts = [e for e in sent_events(frames) if e["type"] == "session.start"]
    assert len(starts) == 2
    assert starts[-1]["turn_detection"] is None  # push-to-talk: only the commit ends a turn
    assert ("conversation" in starts[-1]) == conversation

    page.locator("body").click()
    page.keyboard.down("Space")
    expect(app).to_have_attribute("data-presence", "listening")
    page.wait_for_timeout(1500)
    commits = [e for e in sent_events(frames) if e["type"] == "input_audio.commit"]
    assert commits == []  # nothing ends the turn while it is held
    page.keyboard.up("Space")
    page.wait_for_timeout(300)
    commits = [e for e in sent_events(frames) if e["type"] == "input_audio.commit"]
    assert len(commits) == 1
    audio_after_release = len([f for f in frames if not isinstance(f, str)])
    page.wait_for_timeout(600)
    assert len([f for f in frames if not isinstance(f, str)]) == audio_after_release


def test_push_to_talk_hold_with_pauses_is_one_turn_at_release(pause_browser, server, fake_llm):
    """Holding Space through a 3 s pause: no turn ends while held; one turn, at release."""
    from tests.fake_openai import Reply

    fake_llm.script(Reply("A nebula is a cloud of gas and dust."))
    page, frames = open_page(pause_browser, server)
    app = page.locator("#voz-app")
    page.get_by_label("Push to talk (hold Space)").check()  # the microphone opens now
    expect(app).to_have_attribute("data-connection", "open", timeout=30000)
    page.locator("body").click()
    page.keyboard.down("Space")  # at once: the microphone may still be opening
    held = time.monotonic()
    # The rest of the file (lead-in, first sentence, 3 s pause, second sentence) while held.
    page.wait_for_timeout(int((7 + PAUSE_S + 5) * 1000))
    expect(page.locator("#log .msg.user")).to_have_count(0)  # nothing ended the turn
    expect(page.locator("#talk")).to_have_text("Release to send")
    page.keyboard.up("Space")
    held = time.monotonic() - held
    # One microphone: pressing while it opened once started a second one, and the two streams'
    # chunks interleaved into twice the audio (heard as nonsense).
    sent_s = sum(len(f) for f in frames if not isinstance(f, str)) / 2 / 16000
    assert sent_s <= held + 0.5, (sent_s, held)

    user = page.locator("#log .msg.user")
    expect(user).to_have_count(1, timeout=40000)
    text = user.first.locator(".text").inner_text()
    words = set(text.lower().replace("?", "").replace(",", "").replace(".", "").split())
    # Both sides of the pause in the one turn.
    assert len(words & {"good", "morning", "engines", "ready"}) >= 2, text
    assert len(words & {"what", "nebula", "made"}) >= 2, text
    expect(page.locator("#log .msg.assistant").first).to_have_attribute(
        "data-state", "done", timeout=30000
    )
    page.wait_for_timeout(1500)
    expect(user).to_have_count(1)  # the pause did not split it into two turns
    assert len([e for e in sent_events(frames) if e["type"] == "input_audio.commit"]) == 1
