"""Issue 21, POST /api/tts over a real daphne: a long text is spoken piece by piece (no piece
holds a worker long enough to be killed), and one user's concurrent requests are capped
(TTS_CONCURRENT_PER_USER) so another user is served at once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.fake_openai import FakeOpenAI
from tests.servers import ROOT, fake_model_env, prepare_database, start_daphne

LONG = "1" * 1900  # The red team's example: one 2,000-character job held a Piper worker 20 s.
VOICE = "piper:en_US-joe-medium"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    model = FakeOpenAI().start()
    # Three workers and a cap of two: one user at the cap still leaves a worker for others.
    env = fake_model_env(
        tmp_path_factory.mktemp("tts-pieces"),
        model,
        TTS_ENGINES="piper,espeak",
        TTS_WORKERS="3",
        TTS_CONCURRENT_PER_USER="2",
    )
    token = prepare_database(env)["token"]
    other = subprocess.run(
        [sys.executable, "manage.py", "create_token", "bystander", "--create-user"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    daphne = start_daphne(env)
    try:
        yield daphne, token, other
    finally:
        daphne.stop()
        model.stop()


class Speech:
    """One POST /api/tts read to its end on a thread: status, headers, body, first-byte time."""

    def __init__(self, daphne, token: str, text: str, fmt: str = "pcm16") -> None:
        self.request = urllib.request.Request(
            f"{daphne.http}/api/tts",
            data=json.dumps({"text": text, "voice": VOICE, "format": fmt}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        self.answered = threading.Event()
        self.status = 0
        self.headers: dict = {}
        self.body = b""
        self.first_s = self.total_s = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Speech:
        self.thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(self.request, timeout=120) as answer:
                self.status, self.headers = answer.status, dict(answer.headers)
                self.answered.set()
                first = answer.read(1)
                self.first_s = time.monotonic() - started
                self.body = first + answer.read()
        except urllib.error.HTTPError as error:
            self.status, self.headers, self.body = error.code, dict(error.headers), error.read()
        finally:
            self.total_s = time.monotonic() - started
            self.answered.set()

    def join(self) -> Speech:
        self.thread.join(180)
        return self

    def seconds(self) -> float:
        return len(self.body) / 2 / int(self.headers["X-Voz-Sample-Rate"])


def test_a_long_text_streams_piece_by_piece_and_one_user_cannot_crowd_out_another(served):
    daphne, token, other = served
    warm = Speech(daphne, other, "Hello there.").start().join()  # Piper's voice loaded.
    assert warm.status == 200, warm.body
    mine = [Speech(daphne, token, LONG).start() for _ in range(2)]
    for speech in mine:
        assert speech.answered.wait(60) and speech.status == 200, speech.body
    # A third concurrent request of the same user is refused at once...
    third = Speech(daphne, token, "Hello there.").start().join()
    assert third.status == 429, third.body
    assert json.loads(third.body)["code"] == "rate_limited"
    assert int(third.headers["Retry-After"]) >= 1
    # ...while another user's is served promptly (it took 20 s, then espeak, before).
    bystander = Speech(daphne, other, "Hello there.").start().join()
    assert bystander.status == 200 and bystander.headers["X-Voz-Engine"] == "piper"
    assert bystander.total_s < 5, bystander.total_s
    for speech in mine:
        speech.join()
        assert speech.status == 200 and speech.headers["X-Voz-Engine"] == "piper"
        assert speech.first_s < 15, speech.first_s  # The first piece, not the whole text.
        # 1,900 digits read one by one: about a tenth of a second each.
        assert 100 < speech.seconds() < 400, speech.seconds()
    assert "starting another" not in daphne.output()  # No worker was killed or replaced.
    # The slots were given back: the user is served again.
    again = Speech(daphne, token, "Hello again.").start().join()
    assert again.status == 200, again.body
