"""The page in a real Chromium: sign-in, instances, memory, history, languages, the microphone."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    api_get,
    fake_llm_env,
    open_talk_page,
    running_server,
    screenshot,
    sign_in,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_llm):
    # Replies (and memory updates) from a fake model; English recognition only, so a Spanish
    # instance meets "no recogniser for this language".
    env = fake_llm_env(fake_llm, STT_ENGINES="pocketsphinx")
    with running_server(tmp_path_factory.mktemp("page"), env) as served:
        yield served


def test_sign_in_pick_instance_shows_memory_and_history(browser, server):
    page = browser.new_page(locale="en-US")
    sign_in(page, server["base"], server)
    page.locator("#instance-select").select_option(label="nova — Captain Nova (en)")
    page.locator("#memory-panel summary").click()
    expect(page.locator("#memory-text")).to_have_text(
        "Commands the starship Lumen. Her first officer is a robot named Bolt."
    )
    expect(page.locator("#memory-meta")).to_contain_text("of 8000 characters")
    page.locator("#history summary").click()
    expect(page.locator("#conversations")).to_have_text("No conversations yet.")
    screenshot(page, "page-instance.png")


def test_anonymous_visitor_is_sent_to_sign_in(browser, server):
    page = browser.new_page()
    page.goto(f"{server['base']}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))


def test_create_instance_from_the_page(browser, server):
    page = browser.new_page(locale="en-US")
    sign_in(page, server["base"], server)
    page.locator("#new-instance summary").click()
    page.get_by_label("Name", exact=True).fill("nova-browser")
    page.get_by_label("Character", exact=True).select_option(label="Captain Nova (en)")
    page.get_by_label("Initial memory (optional)").fill("Met a visitor from the browser test.")
    page.get_by_role("button", name="Create instance").click()
    expect(page.locator("#notice")).to_have_text("Instance “nova-browser” created.")
    expect(page.locator("#instance-select option:checked")).to_contain_text("nova-browser")
    expect(page.locator("#memory-text")).to_have_text("Met a visitor from the browser test.")
    stored = api_get(server["base"], server["token"], "/api/instances/by-name/nova-browser")
    assert stored["character_name"] == "Captain Nova"
    assert stored["memory"] == "Met a visitor from the browser test."

    # A taken name is refused with the API's message, in the form.
    page.locator("#new-instance summary").click()
    page.get_by_label("Name", exact=True).fill("NOVA-browser")
    page.get_by_role("button", name="Create instance").click()
    expect(page.locator("#new-instance-error")).not_to_be_empty()


@pytest.mark.parametrize(
    ("locale", "lang", "heading", "button"),
    [
        ("es-ES", "es", "Habla con un personaje", "Iniciar micrófono"),
        ("en-GB", "en", "Talk to a character", "Start microphone"),
    ],
)
def test_page_speaks_the_browsers_language(browser, server, locale, lang, heading, button):
    page = browser.new_page(locale=locale)
    sign_in(page, server["base"], server)
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.locator("h1")).to_have_text(heading)
    expect(page.locator("#talk")).to_have_text(button)


def test_fake_microphone_reaches_the_level_meter(browser, server):
    page = browser.new_page(locale="en-US")
    sign_in(page, server["base"], server)
    page.get_by_role("button", name="Start microphone").click()
    expect(page.locator("#talk")).to_have_attribute("aria-pressed", "true")
    # The speech file starts after one second of silence: the level rises when the voice does.
    page.wait_for_function(
        "Number(document.getElementById('voz-app').dataset.inputLevel) > 0.01", timeout=10000
    )
    page.get_by_role("button", name="Stop microphone").click()
    expect(page.locator("#talk")).to_have_attribute("aria-pressed", "false")


DOWNSAMPLE_PROBE = """
async ([inputRate, seconds]) => {
  const context = new OfflineAudioContext(1, inputRate * seconds, inputRate);
  await context.audioWorklet.addModule("/static/frontend/mic-worklet.js");
  const node = new AudioWorkletNode(context, "voz-downsampler", {
    numberOfOutputs: 0,
    processorOptions: { outputRate: 16000, chunkMs: 80 },
  });
  const chunks = [];
  node.port.onmessage = (event) => chunks.push(event.data.pcm);
  for (const frequency of [1000, 12000]) {  // 12 kHz folds to 4 kHz if nothing filters it
    const tone = new OscillatorNode(context, { frequency });
    const gain = new GainNode(context, { gain: 0.4 });
    tone.connect(gain).connect(node);
    tone.start();
  }
  await context.startRendering();
  await new Promise((resolve) => setTimeout(resolve, 300));  // the last port messages
  const samples = chunks.flatMap((chunk) => Array.from(chunk, (v) => v / 32768)).slice(1600);
  const amplitude = (frequency) => {  // Goertzel: the amplitude of one frequency
    const w = (2 * Math.PI * frequency) / 16000;
    let re = 0, im = 0;
    samples.forEach((x, n) => { re += x * Math.cos(w * n); im -= x * Math.sin(w * n); });
    return (2 * Math.hypot(re, im)) / samples.length;
  };
  return { count: chunks.reduce((sum, c) => sum + c.length, 0),
           kept: amplitude(1000), alias: amplitude(4000) };
}
"""


@pytest.mark.parametrize("input_rate", [48000, 44100])
def test_worklet_downsamples_to_16k_with_a_low_pass(browser, server, input_rate):
    page = browser.new_page()
    page.goto(f"{server['base']}/accounts/login/")
    result = page.evaluate(DOWNSAMPLE_PROBE, [input_rate, 2])
    assert abs(result["count"] - 32000) <= 1280  # 16 kHz, within one 80 ms chunk
    assert result["kept"] == pytest.approx(0.4, abs=0.04)  # 1 kHz passes
    assert result["alias"] < 0.01  # 12 kHz is filtered out, not folded back to 4 kHz


def test_push_to_talk_with_the_space_bar_sends_audio_only_while_held(browser, server):
    page = open_talk_page(browser, server)
    app = page.locator("#voz-app")
    page.get_by_label("Push to talk (hold Space)").check()
    expect(page.get_by_role("button", name="Hold to talk")).to_be_visible()
    expect(page.get_by_role("button", name="Start microphone")).to_have_count(0)  # one control
    # The mode is part of session.start (turn_detection): the page starts a new session for it.
    expect(app).to_have_attribute("data-connection", "open", timeout=30000)
    page.locator("body").click()  # focus outside the form controls
    page.wait_for_function("Number(document.getElementById('voz-app').dataset.inputLevel) > 0")
    assert app.get_attribute("data-frames-sent") == "0"  # the microphone is open but not sent

    page.keyboard.down("Space")
    expect(page.locator("#talk")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#talk")).to_have_text("Release to send")
    page.wait_for_timeout(1000)
    page.keyboard.up("Space")
    expect(page.locator("#talk")).to_have_attribute("aria-pressed", "false")
    sent = int(app.get_attribute("data-frames-sent"))
    assert 6 <= sent <= 20  # ~1 s of 80 ms frames
    page.wait_for_timeout(500)
    assert int(app.get_attribute("data-frames-sent")) == sent


def test_page_fits_a_phone_screen(browser, server):
    page = browser.new_page(locale="es-ES", viewport={"width": 360, "height": 740})
    sign_in(page, server["base"], server, next_path="/?instance=nova")
    expect(page.locator("#memory-text")).not_to_be_empty()
    expect(page.locator("#character-name")).to_have_text("Captain Nova")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(page.locator("#settings")).to_be_hidden()  # out of the way until asked for
    for control in ["#talk", "#stop", "#text-input", "#settings-toggle"]:
        box = page.locator(control).bounding_box()
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 360
    page.get_by_role("button", name="Ajustes").click()
    expect(page.locator("#settings-toggle")).to_have_attribute("aria-expanded", "true")
    box = page.locator("#instance-select").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 360
    page.get_by_role("button", name="Cerrar los ajustes").click()
    expect(page.locator("#settings")).to_be_hidden()
    expect(page.locator("#settings-toggle")).to_be_focused()


def reconnect_seconds(page) -> int:
    text = page.locator("#connection-status").inner_text()
    match = re.search(r"Reconnecting in (\d+) s", text)
    return int(match.group(1)) if match else -1


def test_connection_lost_banner_counts_down_and_clears_after_reconnect(browser, tmp_path):
    with running_server(tmp_path) as served:
        page = open_talk_page(browser, served, next_path="/?instance=nova")
        app = page.locator("#voz-app")
        first_session = app.get_attribute("data-session")

        served["daphne"].stop()
        expect(app).to_have_attribute("data-connection", "reconnecting")
        expect(page.locator("#banner")).to_contain_text("Connection lost. Reconnecting in")
        # The back-off grows (1, 2, 4 s …); the wait counts down instead of standing still.
        page.wait_for_function(
            "/Reconnecting in [3-9] s/.test(document.getElementById('connection-status')"
            ".textContent)",
            timeout=20000,
        )
        before = reconnect_seconds(page)
        page.wait_for_timeout(1100)
        after = reconnect_seconds(page)
        assert 0 < after < before or after > before + 2, (before, after)  # counted, or retried

        # Typing while disconnected says so; once reconnected that message goes away.
        page.get_by_label("Type instead").fill("Are you there?")
        page.get_by_label("Type instead").press("Enter")
        expect(page.locator("#banner")).to_contain_text("Not connected yet")
        served["daphne"].start()

        expect(app).to_have_attribute("data-connection", "open", timeout=30000)
        expect(page.locator("#connection-status")).to_have_text("Connected")
        expect(page.get_by_text("Connection lost")).to_be_hidden()
        expect(page.get_by_text("Not connected yet")).to_be_hidden()
        expect(page.locator("#banner")).to_be_hidden()
        assert app.get_attribute("data-session") not in {"", first_session}


def _api(server: dict, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{server['base']}/api{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {server['token']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"{}")


def test_a_deleted_instance_stops_the_page_instead_of_reconnecting(browser, server):
    nova = _api(server, "GET", "/instances/by-name/nova")
    doomed = _api(
        server, "POST", "/instances", {"name": "doomed", "character_id": nova["character_id"]}
    )
    page = open_talk_page(browser, server, next_path="/?mic=raw&instance=doomed")
    app = page.locator("#voz-app")
    _api(server, "DELETE", f"/instances/{doomed['id']}")
    expect(app).to_have_attribute("data-connection", "closed")  # 4404: not "reconnecting"
    expect(page.locator("#banner")).to_contain_text("This instance no longer exists")
    page.wait_for_timeout(2500)  # More than the first back-off (1 s): it did not reconnect.
    assert app.get_attribute("data-connection") == "closed"
    page.close()


def test_spanish_page_explains_errors_in_spanish(browser, server):
    page = browser.new_page(locale="es-ES")
    sign_in(page, server["base"], server)
    # Rosa speaks Spanish and this server recognises English only: a calm note, in Spanish.
    page.locator("#instance-select").select_option(label="rosa — Doña Rosa (es)")
    expect(page.locator("#voz-app")).to_have_attribute("data-connection", "open", timeout=30000)
    expect(page.locator("#notice")).to_have_text(
        "En este servidor no hay reconocimiento de voz para este idioma. Puedes escribir tus "
        "mensajes; las respuestas se siguen oyendo."
    )
    expect(page.locator("#talk")).to_be_disabled()
    expect(page.locator("#banner")).to_be_hidden()
    assert "Speech recognition is unavailable" not in page.locator("main").inner_text()

    # A taken name: the short message in Spanish, the server's words only in "Detalles".
    page.locator("#new-instance summary").click()
    page.get_by_label("Nombre", exact=True).fill("ROSA")
    page.get_by_role("button", name="Crear instancia").click()
    error = page.locator("#new-instance-error")
    expect(error.locator(".error-text")).to_have_text("Ese nombre ya está en uso. Elige otro.")
    expect(error.locator("details pre")).to_be_hidden()
    error.locator("details summary").click()
    expect(error.locator("details pre")).to_contain_text("already taken")
    screenshot(page, "page-error-es.png")


def test_language_switch(browser, server):
    page = browser.new_page(locale="es-ES")
    sign_in(page, server["base"], server)
    expect(page.locator("h1")).to_have_text("Habla con un personaje")
    expect(page.get_by_role("button", name="Español")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text("Talk to a character")
    expect(page).to_have_url(re.compile(r"/\?mic=raw$"))
    page.reload()  # remembered
    expect(page.locator("#talk")).to_have_text("Start microphone")


def test_denied_microphone_says_so(playwright, server):
    # No --use-fake-ui-for-media-stream: the permission prompt is refused.
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, "--use-fake-device-for-media-stream"]
    )
    try:
        page = browser.new_page(locale="en-US")
        sign_in(page, server["base"], server)
        page.get_by_role("button", name="Start microphone").click()
        expect(page.locator("#banner")).to_contain_text("Microphone access was denied")
        expect(page.locator("#talk")).to_have_attribute("aria-pressed", "false")
    finally:
        browser.close()
