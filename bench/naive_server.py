"""The naive pipeline, for comparison: whole transcript → whole reply → whole audio.

What a first voice bot does (and the original seed's example did): wait for the recogniser's
final transcript, ask the model for the whole reply (no streaming), synthesise the whole reply,
then send it. Same recogniser, model, TTS chain and output encoding as the server (the project's
own engines, same settings), and the same voz.v1 events, so the same client measures both.

    python -m bench.naive_server --port 8766     # environment as for daphne (bench/procs.py)

A benchmark tool only: no authentication, no storage, one turn at a time per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

LANGUAGES = {"nova": "en", "nova-kiosk": "en", "rosa": "es"}


async def session(ws) -> None:
    from django.conf import settings
    from openai import AsyncOpenAI

    from audio_pipeline import formats, stt, tts
    from characters.demo import DEMO_CHARACTERS

    start = json.loads(await ws.recv())
    language = LANGUAGES.get(start.get("instance", ""), "en")
    voices = next(
        (
            c["character"]["voices"]
            for c in DEMO_CHARACTERS
            if c["character"]["language"] == language
        ),
        {},
    )
    executor = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()
    try:
        recognizer = await loop.run_in_executor(executor, stt.create_recognizer, language)
        engine = recognizer.engine
    except stt.SttUnavailable:
        recognizer, engine = None, None
    client = AsyncOpenAI(base_url=settings.OPENAI_BASE_URL, api_key=settings.OPENAI_API_KEY)
    await ws.send(json.dumps({"type": "session.started", "stt_engine": engine}))

    async def send(event: dict) -> None:
        await ws.send(json.dumps(event))

    async for frame in ws:
        if not isinstance(frame, bytes) or recognizer is None:
            continue
        results = await loop.run_in_executor(executor, recognizer.accept, frame)
        text = " ".join(r.text for r in results if r.final and r.text.strip())
        if not text:
            continue
        rid = uuid.uuid4().hex
        await send({"type": "transcript.final", "text": text})
        completion = await client.chat.completions.create(
            model=settings.OPENAI_MODEL,
            messages=[
                {"role": "system", "content": "You are a starship captain."},
                {"role": "user", "content": text},
            ],
        )
        reply = completion.choices[0].message.content or ""
        await send({"type": "response.started", "response_id": rid})
        await send({"type": "response.text.delta", "response_id": rid, "delta": reply})
        await send({"type": "response.sentence", "response_id": rid, "index": 0, "text": reply})
        stream = await tts.synthesize_with_fallback(reply, language=language, voices=voices)
        chunks = [chunk async for chunk in stream]
        data = b"".join(c.data for c in chunks)
        audio = await asyncio.to_thread(
            formats.convert, data, chunks[0].format, chunks[0].sample_rate, "wav"
        )
        await send({"type": "response.audio", "response_id": rid, "index": 0, "format": "wav"})
        await ws.send(audio.data)
        await send(
            {"type": "response.done", "response_id": rid, "text": reply, "interrupted": False}
        )
        await send({"type": "metrics", "response_id": rid})
    executor.shutdown(wait=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
    import django

    django.setup()
    from websockets.asyncio.server import serve

    async def run() -> None:
        from audio_pipeline import tts

        stream = await tts.synthesize_with_fallback("Hello.", language="en", voices={})
        _ = [chunk async for chunk in stream]  # Load the voice before the first turn.
        async with serve(session, "127.0.0.1", args.port, max_size=2**24):
            await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
