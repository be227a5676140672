"""A registry of readiness details (which STT/TTS/LLM engines are active, what fell back).

Apps register a callable returning a JSON-able dict; `/readyz` shows them under `details`.
"""

from __future__ import annotations

from collections.abc import Callable

_providers: dict[str, Callable[[], dict]] = {}


def register(name: str, provider: Callable[[], dict]) -> None:
    _providers[name] = provider


def collect() -> dict:
    details = {}
    for name, provider in _providers.items():
        try:
            details[name] = provider()
        except Exception as exc:  # One broken provider must not hide the others.
            details[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return details
