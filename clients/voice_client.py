"""Reference voice client: speaks a WAV file to a Voz server and saves the spoken reply.

    .venv/bin/python -m clients.voice_client --token voz_… --instance rosa speech.wav

Without --url it uses $VOZ_WS_URL, else the URL `./scripts/serve` wrote into serve.env (in
$VOZ_DATA_DIR, default var/), else ws://127.0.0.1:8000/ws/voice/. When the server cannot be
reached or refuses the session it says so in one line and exits with status 2.

Close codes (docs/protocol.md): after 4500 (server error), 4503 (unavailable), 4429 (slow
client), 4409 (too many sessions) or a connection lost without a close frame (1006), it starts
over on a new connection,
up to --retries times with exponential back-off; after 4401, 4403, 4404 or 4408 it stops: a
retry would get the same answer.

Streams the WAV (PCM16 mono, any rate 8–48 kHz) at real-time pace in 40 ms frames, then commits
the utterance (with --push-to-talk, pauses in the file do not end the turn: only the commit does), prints every event as it arrives, and writes each sentence's audio to --out.
Games and kiosks can copy from it: it uses only the `websockets` package and the documented
protocol (docs/protocol.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import wave
from pathlib import Path

import websockets

FRAME_SECONDS = 0.04
DEFAULT_URL = "ws://127.0.0.1:8000/ws/voice/"
# Errors after which the turn gets no reply (docs/protocol.md): the client ends the session.
TURN_ERRORS = {"stt_failed", "text_too_long", "rate_limited"}
EXTENSIONS = {"wav": "wav", "pcm16": "pcm", "mp3": "mp3"}
# Close codes after which a new connection may succeed (realtime/close_codes.py); 1006: the
# connection was lost without a close frame.
RETRY_CODES = {4500, 4503, 4429, 4409, 1006}
STOP_CODES = {
    4401: "the token was not accepted",
    4403: "this origin may not open sockets",
    4404: "not found",
    4408: "the session timed out",
}
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise SystemExit(
                f"{path}: need 16-bit mono WAV (got {wav.getsampwidth() * 8}-bit, "
                f"{wav.getnchannels()} channels)"
            )
        return wav.readframes(wav.getnframes()), wav.getframerate()


def default_url() -> str:
    """$VOZ_WS_URL, else the URL ./scripts/serve is serving (its serve.env), else the default."""
    if os.environ.get("VOZ_WS_URL"):
        return os.environ["VOZ_WS_URL"]
    data_dir = os.environ.get("VOZ_DATA_DIR") or Path(__file__).resolve().parent.parent / "var"
    try:
        lines = (Path(data_dir) / "serve.env").read_text(encoding="utf-8").splitlines()
    except OSError:
        return DEFAULT_URL
    return next((x.split("=", 1)[1] for x in lines if x.startswith("VOZ_WS_URL=")), DEFAULT_URL)


class CannotConnect(Exception):
    """The server could not be reached, or it refused the connection or the session."""


class Retry(Exception):
    """The server closed with a code that a new connection may not get again (RETRY_CODES)."""


async def run_with_retries(args: argparse.Namespace) -> int:
    """`run`, started over after a close code that says "retry", with exponential back-off and
    jitter (so many clients do not come back at once). Raises CannotConnect."""
    for attempt in range(args.retries + 1):
        try:
            return await run(args)
        except Retry as exc:
            if attempt == args.retries:
                raise CannotConnect(f"{exc}; gave up after {args.retries} retries") from None
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**attempt) * random.uniform(0.8, 1.2)
            print(f"voice_client: {exc}; retrying in {delay:.1f} s.", file=sys.stderr)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def run(args: argparse.Namespace) -> int:
    pcm, rate = read_wav(args.wav) if args.wav else (b"", 16000)
    out = Path(args.out)
    subprotocols = ["voz.v1", f"bearer.{args.token}"]
    started = time.monotonic()
    exit_code = 1
    try:
        connection = await websockets.connect(
            args.url, subprotocols=subprotocols, max_size=2**24, open_timeout=10
        )
    except websockets.exceptions.InvalidStatus as exc:
        status = exc.response.status_code
        raise CannotConnect(f"the server refused the connection (HTTP {status})") from None
    except (OSError, TimeoutError, websockets.exceptions.InvalidHandshake) as exc:
        raise CannotConnect(f"{exc.__class__.__name__}: {exc}") from None
    async with connection as ws:
        pending_audio: dict | None = None
        sender: asyncio.Task | None = None
        typed = False
        fatal: dict | None = None  # The fatal `error` event that came before the close.
        try:  # A close may come at any time, even before the server read session.start.
            await ws.send(
                json.dumps(
                    {
                        "type": "session.start",
                        "instance": args.instance,
                        **({"language": args.language} if args.language else {}),
                        "input_audio": {"format": "pcm16", "sample_rate": rate},
                        "output_audio": {"format": args.format},
                        **({"turn_detection": None} if args.push_to_talk else {}),
                    }
                )
            )
            while True:
                try:
                    frame = await asyncio.wait_for(ws.recv(), timeout=args.timeout)
                except TimeoutError:
                    print(
                        f"voice_client: no answer for {args.timeout:g} s; giving up.",
                        file=sys.stderr,
                    )
                    break
                except websockets.exceptions.ConnectionClosed:
                    break
                stamp = f"{time.monotonic() - started:7.3f}s"
                if isinstance(frame, bytes):
                    if pending_audio is None:
                        print(f"{stamp} unexpected binary frame ({len(frame)} bytes)")
                        continue
                    name = (
                        out
                        / f"{pending_audio['response_id'][:8]}-{pending_audio['index']:02d}.{EXTENSIONS[args.format]}"
                    )
                    await asyncio.to_thread(name.write_bytes, frame)
                    print(f"{stamp} audio saved: {name} ({len(frame)} bytes)")
                    pending_audio = None
                    continue
                event = json.loads(frame)
                kind = event.get("type")
                if kind == "response.text.delta" and not args.verbose:
                    print(event["delta"], end="", flush=True)
                    continue
                print(f"{stamp} {json.dumps(event, ensure_ascii=False)}")
                if kind == "session.started":
                    if args.text:
                        await ws.send(json.dumps({"type": "input_text", "text": args.text}))
                        typed = True
                    else:
                        sender = asyncio.create_task(stream_audio(ws, pcm, rate))
                elif kind == "response.audio":
                    pending_audio = event
                elif kind == "metrics":
                    exit_code = 0
                    await ws.send(json.dumps({"type": "session.end"}))
                elif kind == "error" and event.get("fatal"):
                    fatal = event
                elif kind == "session.ended":
                    break
                elif kind == "response.done" and event.get("error"):
                    await ws.send(json.dumps({"type": "session.end"}))  # the reply failed
                elif (
                    kind == "error"
                    and event.get("code") in TURN_ERRORS
                    and turn_sent(sender, typed)
                ):  # This turn will not be answered.
                    await ws.send(json.dumps({"type": "session.end"}))
        except websockets.exceptions.ConnectionClosed:
            pass  # Its code is read below.
        if sender is not None:
            sender.cancel()
        await ws.close()
        closed_with(ws.close_code, fatal)
    return exit_code


def closed_with(code: int | None, fatal: dict | None) -> None:
    """Act on the server's close code: raises Retry or CannotConnect, or returns (1000, or the
    client closed first)."""
    why = f" ({fatal['code']}: {fatal.get('message', '')})" if fatal else ""
    if code in RETRY_CODES:
        raise Retry(f"the server closed the connection with {code}{why}")
    if code in STOP_CODES:
        raise CannotConnect(f"{STOP_CODES[code]} (close code {code}){why}")


def turn_sent(sender: asyncio.Task | None, typed: bool) -> bool:
    """The client's one turn is out: the text was sent, or the audio streamed and committed."""
    return typed or (sender is not None and sender.done())


async def stream_audio(ws, pcm: bytes, rate: int) -> None:
    """Send the audio at real-time pace, then a little silence, then commit."""
    step = int(rate * FRAME_SECONDS) * 2
    tail = b"\x00\x00" * int(rate * 0.3)
    start = time.monotonic()
    for offset, position in enumerate(range(0, len(pcm) + len(tail), step)):
        chunk = (pcm + tail)[position : position + step]
        await ws.send(chunk)
        delay = start + (offset + 1) * FRAME_SECONDS - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await ws.send(json.dumps({"type": "input_audio.commit"}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("wav", type=Path, nargs="?", help="16-bit mono WAV to speak")
    parser.add_argument(
        "--url", help=f"the server's voice WebSocket (default: see above, or {DEFAULT_URL})"
    )
    parser.add_argument("--token", required=True, help="API token (manage.py create_token)")
    parser.add_argument("--instance", required=True, help="instance name, e.g. rosa")
    parser.add_argument("--language", help="override the character's language")
    parser.add_argument("--format", choices=sorted(EXTENSIONS), default="wav")
    parser.add_argument("--text", help="type this instead of speaking a file")
    parser.add_argument("--out", default="reply-audio", help="folder for the reply audio")
    parser.add_argument("--verbose", action="store_true", help="print every delta event")
    parser.add_argument(
        "--push-to-talk",
        action="store_true",
        help="the whole file is one turn, ended by the commit (turn_detection null)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60, help="give up after this many seconds of silence"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="new connections after a close that says retry (4500, 4503, 4429, 4409, 1006)",
    )
    args = parser.parse_args(argv)
    if not args.wav and not args.text:
        parser.error("give a WAV file or --text")
    args.url = args.url or default_url()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(run_with_retries(args))
    except CannotConnect as exc:
        print(
            f"voice_client: cannot talk to {args.url}: {exc}.\n"
            "Is the server running? ./scripts/serve prints its WebSocket URL; pass it with --url.",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
