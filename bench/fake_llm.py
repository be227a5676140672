"""A controllable OpenAI-compatible chat server for benchmarks (asyncio, one process, no deps).

Answers `POST /v1/chat/completions` (streamed or not) with a scripted reply whose pace is set by
three knobs: time to first token (s), tokens per second, and the reply itself (N sentences).
Asyncio rather than threads so a thousand concurrent streams cost little.

    python -m bench.fake_llm --port 8765 --ttft 0.3 --tps 50 --sentences 4

Control at run time: `POST /control` with JSON `{"ttft": 0.3, "tps": 50, "sentences": 4}` (any
subset; `"text": "..."` replaces the reply); `GET /stats` gives the request count.

A request whose last message carries a marker `[bench:ID]` has its tokens' send times recorded:
`GET /emissions` returns `{ID: [[non-space characters of the reply sent so far, time.monotonic()], …]}`
(CLOCK_MONOTONIC: comparable across processes on one machine), so a client can measure the delay
each token gains between the model and itself, whatever the model's own lateness.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field

SENTENCES = [
    "Aye, the stars are bright tonight over the bridge.",
    "We set course for the outer moons at dawn.",
    "Bolt has checked every engine twice, so we are ready.",
    "Bring a warm coat, because it gets cold up here.",
    "Tell me what you would like to see first.",
    "The nebula glows green and gold when the sun rises behind it.",
    "Our scanners found a comet with a tail of ice.",
    "Rest well, and I will call you when we arrive.",
]


@dataclass
class Pace:
    """How the model answers: seconds to the first token, tokens per second, the reply."""

    ttft: float = 0.3
    tps: float = 50.0
    sentences: int = 4
    text: str | None = None

    def reply(self) -> str:
        if self.text is not None:
            return self.text
        return " ".join(SENTENCES[i % len(SENTENCES)] for i in range(self.sentences))

    def tokens(self) -> list[str]:
        return re.findall(r"\s*\S+", self.reply())


MARKER = re.compile(r"\[bench:([0-9A-Za-z_-]+)\]")


@dataclass
class Stats:
    requests: int = 0
    streams: int = 0
    active: int = 0
    started: list[float] = field(default_factory=list)
    emissions: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def marker_of(body: dict) -> str | None:
    """The `[bench:ID]` marker in the request's last message, if any."""
    messages = body.get("messages") or [{}]
    found = MARKER.search(str(messages[-1].get("content", "")))
    return found.group(1) if found else None


class FakeLLM:
    """The server; `await start()` in a loop, or `run_in_thread()` from synchronous code."""

    def __init__(self, pace: Pace | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.pace = pace or Pace()
        self.stats = Stats()
        self.host = host
        self.port = port
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> FakeLLM:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, backlog=2048)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:  # HTTP/1.1 keep-alive: the openai client reuses connections.
                request = await _read_request(reader)
                if request is None:
                    return
                method, path, body = request
                await self._answer(writer, method, path, body)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, writer, method: str, path: str, body: dict) -> None:
        if method == "POST" and path.rstrip("/") == "/control":
            for key, value in body.items():
                if hasattr(self.pace, key):
                    setattr(self.pace, key, value)
            await _json(writer, 200, asdict(self.pace))
        elif method == "GET" and path.rstrip("/") == "/emissions":
            await _json(writer, 200, self.stats.emissions)
        elif method == "GET" and path.rstrip("/") == "/stats":
            await _json(writer, 200, {"requests": self.stats.requests, "active": self.stats.active})
        elif method == "GET" and path.rstrip("/").endswith("/models"):
            await _json(writer, 200, {"object": "list", "data": [{"id": "fake"}]})
        elif method == "POST" and path.rstrip("/").endswith("/chat/completions"):
            self.stats.requests += 1
            self.stats.active += 1
            try:
                if body.get("stream"):
                    await self._stream(writer, body)
                else:
                    await self._complete(writer, body)
            finally:
                self.stats.active -= 1
        else:
            await _json(writer, 404, {"error": {"message": "Not found", "type": "invalid_request"}})

    async def _complete(self, writer, body: dict) -> None:
        pace = Pace(**asdict(self.pace))
        tokens = pace.tokens()
        await asyncio.sleep(pace.ttft + max(len(tokens) - 1, 0) / pace.tps)
        await _json(
            writer,
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(tokens)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(body, tokens),
            },
        )

    async def _stream(self, writer, body: dict) -> None:
        pace = Pace(**asdict(self.pace))
        tokens = pace.tokens()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
        }

        async def event(choices: list, **extra) -> None:
            payload = f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n".encode()
            writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            await writer.drain()

        marker = marker_of(body)
        sent: list[tuple[int, float]] | None = None
        if marker is not None:
            sent = self.stats.emissions.setdefault(marker, [])
        length = 0
        started = time.monotonic()
        await asyncio.sleep(pace.ttft)
        await event([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}])
        for index, token in enumerate(tokens):
            # Paced against the start, so a late wake-up does not slow the whole reply.
            due = started + pace.ttft + index / pace.tps
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            await event([{"index": 0, "delta": {"content": token}, "finish_reason": None}])
            length += len(token.replace(" ", ""))
            if sent is not None:
                sent.append((length, time.monotonic()))
        await event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if (body.get("stream_options") or {}).get("include_usage"):
            await event([], usage=_usage(body, tokens))
        payload = b"data: [DONE]\n\n"
        writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n")
        await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    raw = await reader.readexactly(length) if length else b""
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    return method, path, body if isinstance(body, dict) else {}


async def _json(writer, status: int, data: object) -> None:
    payload = json.dumps(data).encode()
    reason = {200: "OK", 404: "Not Found"}.get(status, "Error")
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    await writer.drain()


def _usage(body: dict, tokens: list[str]) -> dict:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": len(tokens),
        "total_tokens": prompt + len(tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds to the first token")
    parser.add_argument("--tps", type=float, default=50.0, help="tokens per second")
    parser.add_argument("--sentences", type=int, default=4, help="sentences per reply")
    args = parser.parse_args()

    async def serve() -> None:
        fake = await FakeLLM(
            Pace(args.ttft, args.tps, args.sentences), args.host, args.port
        ).start()
        print(json.dumps({"base_url": fake.base_url, "port": fake.port}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
