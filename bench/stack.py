"""The system under test for one run: the fake model and a real daphne over a seeded database.

    with Stack(data_dir, ttft=0.3, tps=50, sentences=4) as stack:
        stack.voice_url, stack.token, stack.stats.cpu_seconds()

Extra settings for daphne (e.g. `STT_ENGINES`) go in `server_settings`; `restart()` brings up a
fresh daphne with other settings over the same database and model.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path

import websockets

from . import procs
from .speaker import TurnResult, VoiceClient
from .spoken import Turn


class Stack:
    def __init__(
        self,
        data_dir: Path,
        *,
        llm_url: str | None = None,
        base_settings: dict[str, str] | None = None,
        **pace: float,
    ) -> None:
        self.data_dir = data_dir
        self.pace = pace
        self.llm_url = llm_url
        self.model: procs.FakeModel | None = None
        self.daphne: procs.Proc | None = None
        self.token = ""
        self.base_settings = base_settings or {}  # Every daphne of the run (e.g. WEB_WORKERS).
        self.settings: dict[str, str] = {}

    def __enter__(self) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.llm_url is None:
            self.model = procs.FakeModel(self.data_dir, **self.pace)
            self.llm_url = self.model.base_url
        env = self._env()
        self.token = procs.prepare_database(env)["token"]
        self.daphne = procs.start_daphne(env)
        self.warm_up()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.daphne is not None:
            self.daphne.stop()
        if self.model is not None:
            self.model.stop()

    def _env(self, **extra: str) -> dict[str, str]:
        return procs.server_env(
            self.data_dir,
            LLM_ENGINE="openai",
            OPENAI_BASE_URL=self.llm_url,
            OPENAI_API_KEY=procs.API_KEY,
            **{**self.base_settings, **self.settings, **extra},
        )

    def restart(self, **settings: str) -> None:
        """A fresh daphne (same database and model) with these settings on top of the defaults."""
        if self.daphne is not None:
            self.daphne.stop()
        self.settings = settings
        self.daphne = procs.start_daphne(self._env())
        self.warm_up()

    def warm_up(self) -> None:
        """One typed turn, so the process has loaded its models before anything is timed."""

        async def typed() -> None:
            async with websockets.connect(
                self.voice_url, subprotocols=["voz.v1", f"bearer.{self.token}"], max_size=2**24
            ) as ws:
                await ws.send(json.dumps({"type": "session.start", "instance": "nova"}))
                await ws.send(json.dumps({"type": "input_text", "text": "Hello."}))
                async for frame in ws:
                    if isinstance(frame, str) and json.loads(frame).get("type") == "metrics":
                        return

        asyncio.run(asyncio.wait_for(typed(), 120))

    @property
    def voice_url(self) -> str:
        return f"ws://127.0.0.1:{self.daphne.port}/ws/voice/"

    def readiness(self) -> dict:
        """The server's `/readyz` details (which STT, TTS and end-of-turn detector it has)."""
        import urllib.request

        url = f"http://127.0.0.1:{self.daphne.port}/readyz"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.loads(answer.read()).get("details", {})

    @property
    def stats(self) -> procs.ProcStats:
        return procs.ProcStats(self.daphne.pid)


async def run_sessions(
    url: str, token: str, plans: list[tuple[str, list[Turn]]], *, system: str = "voz"
) -> tuple[list[dict], list[VoiceClient]]:
    """Run one voice session per (instance, turns) plan at once; all turn results as dicts."""
    clients = [VoiceClient(url, token, system=system, session=i) for i in range(len(plans))]

    async def one(client: VoiceClient, instance: str, turns: list[Turn]) -> list[TurnResult]:
        try:
            return await client.run(turns, instance)
        except (TimeoutError, OSError, Exception) as exc:
            reason = f"session_failed: {type(exc).__name__}: {exc}"[:200]
            return [client._failed(turn, reason) for turn in turns]

    groups = await asyncio.gather(
        *(one(c, instance, turns) for c, (instance, turns) in zip(clients, plans, strict=True))
    )
    return [asdict(r) for group in groups for r in group], clients


def measure(stack_stats: procs.ProcStats, coroutine) -> tuple[object, dict]:
    """Run `coroutine`; also the server's CPU seconds, peak RSS (MiB) and wall time around it."""
    cpu0 = stack_stats.cpu_seconds()
    rss0 = stack_stats.rss_mib()
    peak = [rss0]
    started = time.monotonic()

    async def sample() -> None:
        while True:
            peak.append(stack_stats.rss_mib())
            await asyncio.sleep(0.5)

    async def main():
        sampler = asyncio.create_task(sample())
        try:
            return await coroutine
        finally:
            sampler.cancel()

    result = asyncio.run(main())
    usage = {
        "server_cpu_s": round(stack_stats.cpu_seconds() - cpu0, 2),
        "wall_s": round(time.monotonic() - started, 2),
        "rss_before_mib": round(rss0, 1),
        "rss_peak_mib": round(max(peak), 1),
        "load_average": procs.load_average(),
    }
    return result, usage


def dump(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False))
