"""The page in each of its states, English and Spanish, desktop and phone: each state is reached
(and checked) before its picture is taken. The pictures go to tests/artifacts/screens/; the ones
in docs/img/ (docs/frontend.md) are copies of them."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, fake_llm_env, open_talk_page, running_server

DESKTOP = {"width": 1024, "height": 680}
PHONE = {"width": 360, "height": 740}
STORY = " ".join(
    [
        "Let me tell you about the starship Lumen.",
        "We left the harbour of Titan on a quiet morning.",
        "Bolt checked every engine twice, as he always does.",
        "Then a comet crossed our path and lit the whole bridge.",
    ]
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_llm):
    env = fake_llm_env(fake_llm, STT_ENGINES="pocketsphinx", MEMORY_CONSOLIDATION="false")
    with running_server(tmp_path_factory.mktemp("screens"), env) as served:
        yield served


def shoot(page: Page, name: str) -> None:
    folder = ARTIFACTS / "screens"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), animations="disabled")


def type_message(page: Page, text: str) -> None:
    page.locator("#text-input").fill(text)
    page.locator("#text-input").press("Enter")


def presence(page: Page, state: str, timeout: float = 30000) -> None:
    expect(page.locator("#voz-app")).to_have_attribute("data-presence", state, timeout=timeout)


def test_desktop_english_listening_and_thinking(browser, server, fake_llm):
    from tests.fake_openai import Reply

    page = open_talk_page(browser, server, "en-US", DESKTOP)
    page.get_by_role("button", name="Start microphone").click()
    presence(page, "listening")
    page.wait_for_function("Number(document.getElementById('voz-app').dataset.inputLevel) > 0.01")
    expect(page.locator("#presence")).to_have_text("Captain Nova is listening")
    shoot(page, "desktop-en-listening")
    page.close()

    page = open_talk_page(browser, server, "en-US", DESKTOP)
    fake_llm.script(Reply("Nebulae are clouds of gas and dust.", first_token_delay=4))
    type_message(page, "What is a nebula made of?")
    presence(page, "thinking")
    expect(page.locator("#presence")).to_have_text("Captain Nova is thinking…")
    expect(page.locator("#log .msg.user .text")).to_have_text(["What is a nebula made of?"])
    expect(page.locator("#voz-app")).to_have_attribute("data-presence", "thinking")
    shoot(page, "desktop-en-thinking")
    presence(page, "speaking")


def test_desktop_spanish_speaking_and_an_error(browser, server, fake_llm):
    from tests.fake_openai import Reply

    page = open_talk_page(browser, server, "es-ES", DESKTOP)
    fake_llm.script(Reply(STORY, token_delay=0.03))
    type_message(page, "Cuéntame una historia")
    presence(page, "speaking")
    expect(page.locator("#presence")).to_have_text("Captain Nova está hablando")
    shoot(page, "desktop-es-speaking")
    page.get_by_role("button", name="Detener respuesta").click()
    presence(page, "interrupted")

    page.locator("#new-instance summary").click()
    page.get_by_label("Nombre", exact=True).fill("Nova")
    page.get_by_role("button", name="Crear instancia").click()
    error = page.locator("#new-instance-error")
    expect(error.locator(".error-text")).to_have_text("Ese nombre ya está en uso. Elige otro.")
    error.locator("details summary").click()
    error.scroll_into_view_if_needed()
    shoot(page, "desktop-es-error")


def test_phone_english_interrupted(browser, server, fake_llm):
    from tests.fake_openai import Reply

    page = open_talk_page(browser, server, "en-US", PHONE)
    fake_llm.script(Reply(STORY, token_delay=0.03))
    type_message(page, "Tell me a story")
    presence(page, "speaking")
    page.get_by_role("button", name="Stop reply").click()
    presence(page, "interrupted")
    expect(page.locator("#presence")).to_have_text("Captain Nova was interrupted")
    shoot(page, "phone-en-interrupted")


def test_phone_spanish_settings(browser, server):
    page = open_talk_page(browser, server, "es-ES", PHONE)
    page.get_by_role("button", name="Ajustes").click()
    expect(page.locator("#settings")).to_be_visible()
    page.locator("#memory-panel summary").click()
    expect(page.locator("#memory-text")).to_contain_text("Lumen")
    shoot(page, "phone-es-settings")
