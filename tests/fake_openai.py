"""A small OpenAI-compatible chat server for tests, driven by the real `openai` client.

It runs in a thread on 127.0.0.1 (independent of the test's event loop), records every request,
and streams scripted replies in the format the client accepts. Use the `fake_openai` fixture
(which also points the settings at it) or `FakeOpenAI()` directly:

    fake_openai.script("Hello there.", Reply("Slow one.", token_delay=0.2))
    fake_openai.fail(500, times=1)            # next request: HTTP 500 before any token
    fake_openai.script(Reply("Cut here and more", cut_after=2))   # drop the connection
    fake_openai.requests[-1].json["messages"]  # what the client sent
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

API_KEY = "fake-openai-key-for-tests"


@dataclass
class Reply:
    """A scripted answer. `tokens` defaults to `text` split into words (with their spaces)."""

    text: str = "Hello from the fake model."
    tokens: list[str] | None = None
    first_token_delay: float = 0.0  # seconds before the first chunk
    token_delay: float = 0.0  # seconds between chunks
    cut_after: int | None = None  # drop the connection after this many tokens
    finish_reason: str = "stop"
    usage: bool = True  # send a usage chunk when the client asks for it
    model: str | None = None  # model name in chunks; default: the requested one

    def chunks(self) -> list[str]:
        return self.tokens if self.tokens is not None else re.findall(r"\s*\S+", self.text)


@dataclass
class Failure:
    """An HTTP error answered instead of a reply, before any token."""

    status: int = 500
    message: str = "The fake server failed."
    type: str = "server_error"
    code: str | None = None


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]  # lower-case names
    json: Any
    at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> list[dict]:
        return self.json.get("messages", []) if isinstance(self.json, dict) else []

    @property
    def system(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m.get("role") == "system")


class FakeOpenAI:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[RecordedRequest] = []
        self.default_reply = Reply()
        self._queue: deque[Reply | Failure] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # Control ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, *items: str | Reply | Failure) -> None:
        """Queue answers for the next requests, in order; then `default_reply` is used."""
        with self._lock:
            for item in items:
                self._queue.append(Reply(item) if isinstance(item, str) else item)

    def fail(self, status: int = 500, *, times: int = 1, **kwargs: Any) -> None:
        self.script(*[Failure(status=status, **kwargs) for _ in range(times)])

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.default_reply = Reply()

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _next(self) -> Reply | Failure:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default_reply

    # Server -------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "gpt-3.5-turbo"}]})
                else:
                    self._json(404, {"error": {"message": "Not found", "type": "invalid_request"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                headers = {key.lower(): value for key, value in self.headers.items()}
                fake.requests.append(RecordedRequest(self.path, headers, body))
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": "Not found", "type": "invalid_request"}})
                    return
                answer = fake._next()
                if isinstance(answer, Failure):
                    error = {"message": answer.message, "type": answer.type, "code": answer.code}
                    self._json(answer.status, {"error": error})
                    return
                if isinstance(body, dict) and body.get("stream"):
                    self._stream(body, answer)
                else:
                    self._complete(body or {}, answer)

            def _json(self, status: int, data: Any) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _complete(self, body: dict, reply: Reply) -> None:
                time.sleep(reply.first_token_delay)
                text = "".join(reply.chunks())
                self._json(
                    200,
                    {
                        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": reply.model or body.get("model", "fake"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": reply.finish_reason,
                            }
                        ],
                        "usage": _usage(body, reply),
                    },
                )

            def _chunk(self, data: str) -> None:
                payload = data.encode()
                self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
                self.wfile.flush()

            def _stream(self, body: dict, reply: Reply) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                base = {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": reply.model or body.get("model", "fake"),
                }

                def event(choices: list, **extra: Any) -> None:
                    self._chunk(f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n")

                try:
                    time.sleep(reply.first_token_delay)
                    event([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}])
                    for index, token in enumerate(reply.chunks()):
                        if reply.cut_after is not None and index >= reply.cut_after:
                            self.close_connection = True
                            self.connection.shutdown(2)
                            return
                        if index:
                            time.sleep(reply.token_delay)
                        delta = {"content": token}
                        event([{"index": 0, "delta": delta, "finish_reason": None}])
                    event([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}])
                    wants_usage = (body.get("stream_options") or {}).get("include_usage")
                    if reply.usage and wants_usage:
                        event([], usage=_usage(body, reply))
                    self._chunk("data: [DONE]\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True  # The client went away.

        return Handler


def _usage(body: dict, reply: Reply) -> dict:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    completion = len(reply.chunks())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@pytest.fixture
def fake_openai(settings):
    """A running FakeOpenAI, with the settings pointing the `openai` engine at it."""
    server = FakeOpenAI().start()
    settings.LLM_ENGINE = "openai"
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = API_KEY
    settings.OPENAI_MODEL = "gpt-3.5-turbo"
    settings.LLM_RETRY_BACKOFF = 0.05
    settings.LLM_FIRST_TOKEN_TIMEOUT = 5.0
    settings.LLM_TOTAL_TIMEOUT = 20.0
    settings.MEMORY_CONSOLIDATION = True  # Its default with the openai engine.
    try:
        yield server
    finally:
        server.stop()
