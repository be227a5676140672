"""Voz settings: the one module that reads the environment (and `.env`).

Defaults run offline on one machine: SQLite, the in-memory channel layer, DEBUG off.
`DATABASE_URL` and `REDIS_URL` switch to PostgreSQL and Redis. Every variable is listed
with a comment in `.env.example` and in `docs/configuration.md`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
ENV_FILE = Path(os.environ.get("VOZ_ENV_FILE", BASE_DIR / ".env"))
load_dotenv(ENV_FILE, override=False)


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    """Use SECRET_KEY from the environment, else generate one into `.env` (never committed)."""
    key = env_str("SECRET_KEY")
    if key:
        return key
    key = secrets.token_urlsafe(50)
    try:
        ENV_FILE.parent.mkdir(parents=True, exist_ok=True)
        with ENV_FILE.open("a", encoding="utf-8") as handle:
            handle.write(f"\n# Generated on first run; keep it secret.\nSECRET_KEY={key}\n")
        ENV_FILE.chmod(0o600)
    except OSError:
        pass  # A read-only checkout still runs, with a per-process key.
    os.environ["SECRET_KEY"] = key
    return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
DATA_DIR = Path(env_str("VOZ_DATA_DIR", str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

HOST = env_str("HOST", "127.0.0.1")
PORT = env_int("PORT", 8000)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
WS_ALLOWED_ORIGINS = [origin.rstrip("/") for origin in env_list("WS_ALLOWED_ORIGINS")]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ninja",
    "axes",
    "accounts",
    "characters",
    "consumers",
    "audio_pipeline",
    "voice",
    "frontend",
    "conversation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "realtime.http_methods.HttpMethodsMiddleware",  # HEAD as GET; JSON 405 with Allow
    "realtime.http_edge.TextSafetyMiddleware",
    # ServeStatic (WhiteNoise's async fork): WhiteNoise is sync-only, which made every request,
    # /healthz and the async API included, cross into a thread of its own and back.
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into its 429 (accounts/login_throttle.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "realtime.urls"
ASGI_APPLICATION = "realtime.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, with write transactions queued in the process (realtime/sqlite/base.py).
    DATABASES["default"]["ENGINE"] = "realtime.sqlite"
    # WAL and a busy timeout let the API, the consumers and the tests write concurrently.
    # IMMEDIATE transactions take the write lock up front, so a writer waits for the busy
    # timeout instead of failing at once with "database is locked" when a read turns into a write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": env_float("SQLITE_BUSY_TIMEOUT_SECONDS", 20.0),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        }
    )

if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # One test database per checkout, so parallel runs on one server never collide.
    _checkout = hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:8]
    DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DB_NAME", f"test_voz_{_checkout}")}

REDIS_URL = env_str("REDIS_URL")
# Explicit: redis-py 8 defaults to 5 s, which cuts the layer's 5 s blocking receive and closed
# every idle WebSocket with 1011 (realtime/channel_layer.py, docs/operations.md).
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 15.0)
REDIS_CONNECT_TIMEOUT = env_float("REDIS_CONNECT_TIMEOUT", 5.0)
REDIS_PREFIX = env_str("REDIS_PREFIX", "asgi")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "realtime.channel_layer.ResilientRedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": REDIS_SOCKET_TIMEOUT,
                        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                        "socket_keepalive": True,
                    }
                ],
                "prefix": REDIS_PREFIX,
                "capacity": 1000,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
# Failed sign-ins (django-axes, accounts/login_throttle.py): after LOGIN_FAILURE_LIMIT failures for
# one username or from one IP address, its sign-ins are refused (429, Retry-After) for
# LOGIN_LOCKOUT_SECONDS after the last failure, the right password included. 0: no limit.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900)
AUTHENTICATION_BACKENDS = [
    "accounts.login_throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = LOGIN_FAILURE_LIMIT > 0
AXES_FAILURE_LIMIT = max(1, LOGIN_FAILURE_LIMIT)
AXES_COOLOFF_TIME = timedelta(seconds=LOGIN_LOCKOUT_SECONDS)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # Either one locks.
AXES_RESET_ON_SUCCESS = True  # A successful sign-in clears that username's failures.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # The window runs from the last real failure.
AXES_DISABLE_ACCESS_LOG = True  # Throttling only: no row per successful sign-in.
AXES_LOCKOUT_CALLABLE = "accounts.login_throttle.lockout_response"
AXES_VERBOSE = False
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "frontend" / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
SERVESTATIC_USE_FINDERS = True  # Serve app static files under daphne without collectstatic.
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# HTTPS in production (docs/configuration.md, "Production"): `manage.py check --deploy` is clean
# with these set from the environment.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # Probes speak plain HTTP inside.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# "HTTP_X_FORWARDED_PROTO,https": trust a TLS-terminating proxy that sets this header (only
# behind a proxy that always sets or strips it).
_proxy_ssl_header = env_list("SECURE_PROXY_SSL_HEADER")
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header[:2]) if len(_proxy_ssl_header) == 2 else None
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("HTTP_MAX_BODY_BYTES", 10 * 1024 * 1024)
# A request's head must arrive within this (also an idle keep-alive connection's life); its body
# within this plus 1 s per HTTP_REQUEST_MIN_RATE bytes (realtime/request_deadline.py). 0: off.
HTTP_REQUEST_TIMEOUT_SECONDS = env_float("HTTP_REQUEST_TIMEOUT_SECONDS", 20.0)
HTTP_REQUEST_MIN_RATE = env_int("HTTP_REQUEST_MIN_RATE", 500)  # Bytes a second.

# Domain limits.
MEMORY_MAX_CHARS = env_int("MEMORY_MAX_CHARS", 8000)
DESCRIPTION_MAX_CHARS = env_int("DESCRIPTION_MAX_CHARS", 8000)
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 50)
NINJA_PAGINATION_PER_PAGE = API_PAGE_SIZE
NINJA_PAGINATION_MAX_LIMIT = 500
NINJA_PAGINATION_CLASS = "realtime.pagination.LimitOffset"
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "600/min")  # Per caller; empty: no limit.

# The real-time voice loop (docs/protocol.md). Frames over WS_MAX_FRAME_BYTES get a non-fatal
# `frame_too_large`; daphne closes with 1009 above its --websocket-max-message-size (1 MiB).
WS_MAX_FRAME_BYTES = env_int("WS_MAX_FRAME_BYTES", 65536)
WS_MAX_TEXT_CHARS = env_int("WS_MAX_TEXT_CHARS", 2000)
WS_MAX_SESSION_SECONDS = env_float("WS_MAX_SESSION_SECONDS", 3600)
WS_IDLE_TIMEOUT_SECONDS = env_float("WS_IDLE_TIMEOUT_SECONDS", 300)
# Per user, across sockets, HTTP chat and server processes (accounts/usage.py; in Redis with
# REDIS_URL): turns in any 60 s (REST chat, its event stream, spoken and typed voice turns) and
# open voice sessions. 0: no limit. A session's lease expires SESSION_LEASE_SECONDS after its
# process stops renewing it (a crash), so nobody stays locked out.
WS_TURNS_PER_MINUTE = env_int("WS_TURNS_PER_MINUTE", 20)
WS_MAX_SESSIONS_PER_USER = env_int("WS_MAX_SESSIONS_PER_USER", 5)
SESSION_LEASE_SECONDS = env_float("SESSION_LEASE_SECONDS", 60.0)
WS_OUTBOUND_QUEUE_ITEMS = env_int("WS_OUTBOUND_QUEUE_ITEMS", 2000)
# Unsent bytes one WebSocket may hold in the server (realtime/server.py, docs/operations.md).
WS_MAX_BUFFERED_BYTES = env_int("WS_MAX_BUFFERED_BYTES", 4 * 1024 * 1024)
WS_SLOW_CLIENT_GRACE_SECONDS = env_float("WS_SLOW_CLIENT_GRACE_SECONDS", 5.0)
WS_AUTH_RECHECK_SECONDS = env_float("WS_AUTH_RECHECK_SECONDS", 5.0)  # 0: never re-check.
# Threads for sockets' ORM calls (realtime/sync_threads.py); also the most database connections
# sockets hold at once. 1: every socket waits behind the others, as with plain Channels.
WS_SYNC_THREADS = env_int("WS_SYNC_THREADS", 16)
# How long those threads keep a database connection (health-checked before reuse); 0: one per call.
WS_DB_CONN_MAX_AGE = env_float("WS_DB_CONN_MAX_AGE", 600.0)

# Conversation engine (docs/conversation.md). The API key is read here only and never logged.
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
OPENAI_MODEL = env_str("OPENAI_MODEL", "gpt-3.5-turbo")
LLM_ENGINE = env_str("LLM_ENGINE") or ("openai" if OPENAI_API_KEY or OPENAI_BASE_URL else "local")
LLM_CONTEXT_TOKENS = env_int("LLM_CONTEXT_TOKENS", 0)  # 0: use the per-model table.
LLM_MAX_TOKENS = env_int("LLM_MAX_TOKENS", 300)
LLM_TEMPERATURE = env_float("LLM_TEMPERATURE", 0.8)
LLM_CONNECT_TIMEOUT = env_float("LLM_CONNECT_TIMEOUT", 5.0)
LLM_FIRST_TOKEN_TIMEOUT = env_float("LLM_FIRST_TOKEN_TIMEOUT", 15.0)
LLM_TOTAL_TIMEOUT = env_float("LLM_TOTAL_TIMEOUT", 60.0)
LLM_RETRIES = env_int("LLM_RETRIES", 2)
LLM_RETRY_BACKOFF = env_float("LLM_RETRY_BACKOFF", 0.5)
LLM_TOKEN_TIMEOUT = env_float("LLM_TOKEN_TIMEOUT", 10.0)  # Between tokens once started; 0: none.
# The openai client's HTTP transport: "aiohttp" (the SDK's documented option for concurrency) or
# "httpx" (its default, whose pool probes every idle connection on each request; docs/performance.md).
LLM_HTTP_TRANSPORT = env_str("LLM_HTTP_TRANSPORT", "aiohttp")
LOCAL_MODEL_PATH = env_str("LOCAL_MODEL_PATH")
LOCAL_MAX_TOKENS = env_int("LOCAL_MAX_TOKENS", 120)
LOCAL_CONTEXT_TOKENS = env_int("LOCAL_CONTEXT_TOKENS", 2048)
LOCAL_THREADS = env_int("LOCAL_THREADS", 0)  # 0: llama.cpp's default.
TIKTOKEN_CACHE_DIR = env_str("TIKTOKEN_CACHE_DIR", str(DATA_DIR / "tiktoken"))
CHAT_MAX_CHARS = env_int("CHAT_MAX_CHARS", 2000)
CONVERSATION_SUMMARY_MAX_CHARS = env_int("CONVERSATION_SUMMARY_MAX_CHARS", 2000)
CONVERSATION_STORE_RETRIES = env_int("CONVERSATION_STORE_RETRIES", 4)
CONVERSATION_STORE_BACKOFF = env_float("CONVERSATION_STORE_BACKOFF", 0.5)
# One turn at a time per conversation (conversation/records.py): a turn's lease, renewed every
# third of it while the turn runs; a crashed process's turn blocks the conversation this long.
CONVERSATION_TURN_LEASE_SECONDS = env_float("CONVERSATION_TURN_LEASE_SECONDS", 60.0)
# The bundled local model is too weak to edit memory safely: off by default with it.
MEMORY_CONSOLIDATION = env_bool("MEMORY_CONSOLIDATION", LLM_ENGINE != "local")
MEMORY_RETRY_SECONDS = env_int("MEMORY_RETRY_SECONDS", 300)
MEMORY_IDLE_SECONDS = env_int("MEMORY_IDLE_SECONDS", 900)
MEMORY_SWEEP_SECONDS = env_int("MEMORY_SWEEP_SECONDS", 60)  # 0: no in-process idle sweep.

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Secrets (`?token=`, `voz_…`) are redacted from every record (realtime/access_log.py).
    "filters": {"redact": {"()": "realtime.access_log.RedactingFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # daphne logs request paths; query strings may carry `?token=`, so keep access logs quiet.
        "daphne.access": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # Failures and lockouts; not every step of each.
    },
}


# Speech (audio_pipeline): see docs/speech.md.
def _env_by_language(prefix: str) -> dict[str, str]:
    """`PREFIX_ES=x`, `PREFIX_ES_MX=y` → {"es": "x", "es-mx": "y"} (language tags, lower case)."""
    return {
        name[len(prefix) :].lower().replace("_", "-"): value.strip()
        for name, value in os.environ.items()
        if name.startswith(prefix) and len(name) > len(prefix) and value.strip()
    }


STT_ENGINES = env_list("STT_ENGINES", "vosk,whisper,pocketsphinx")
STT_ENGINES_BY_LANGUAGE = {
    lang: [item.strip() for item in value.split(",") if item.strip()]
    for lang, value in _env_by_language("STT_ENGINES_").items()
}
STT_SAMPLE_RATE = env_int("STT_SAMPLE_RATE", 16000)
STT_MAX_UPLOAD_BYTES = env_int("STT_MAX_UPLOAD_BYTES", 10 * 1024 * 1024)
STT_MAX_SECONDS = env_float("STT_MAX_SECONDS", 120.0)
WARM_UP = env_bool("WARM_UP", True)  # realtime.server loads models before listening.
# realtime.server processes accepting on one port (realtime/workers.py); more than 1 needs REDIS_URL.
WEB_WORKERS = env_int("WEB_WORKERS", 1)
STT_SPHINX_IDLE_DECODERS = env_int("STT_SPHINX_IDLE_DECODERS", 2)  # Pooled per process.
VOSK_MODEL_PATH = env_str("VOSK_MODEL_PATH")
VOSK_MODELS = {
    lang: path for lang, path in _env_by_language("VOSK_MODEL_").items() if lang != "path"
}
VOSK_MODELS_URL = env_str("VOSK_MODELS_URL", "https://alphacephei.com/vosk/models")
MODELS_DIR = Path(env_str("VOZ_MODELS_DIR", str(DATA_DIR / "models")))
# Whisper (faster-whisper): a catalog name (tiny.en, base) or a CTranslate2 model directory.
WHISPER_MODEL = env_str("WHISPER_MODEL", "base")
WHISPER_MODELS = {"en": "tiny.en", **_env_by_language("WHISPER_MODEL_")}
WHISPER_THREADS = env_int("WHISPER_THREADS", 2)
# Decodes of one model that run at once (CTranslate2's num_workers): sessions' finals overlap
# instead of queuing (docs/speech.md has the figures).
WHISPER_WORKERS = env_int("WHISPER_WORKERS", 2)
WHISPER_PARTIAL_INTERVAL_MS = env_float("WHISPER_PARTIAL_INTERVAL_MS", 800.0)
WHISPER_ENDPOINT_MS = env_float("WHISPER_ENDPOINT_MS", 600.0)
# Process-wide: a partial re-decode runs only while fewer decodes than this run (finals always do).
WHISPER_PARTIAL_MAX_DECODES = env_int("WHISPER_PARTIAL_MAX_DECODES", 1)
# Voice activity (Silero VAD) and end of turn (Smart Turn, else a silence timeout).
VAD_ENABLED = env_bool("VAD_ENABLED", True)
VAD_THRESHOLD = env_float("VAD_THRESHOLD", 0.5)
VAD_MIN_SPEECH_MS = env_float("VAD_MIN_SPEECH_MS", 96.0)
VAD_MIN_SILENCE_MS = env_float("VAD_MIN_SILENCE_MS", 200.0)
TURN_DETECTOR = env_str("TURN_DETECTOR", "smart_turn")
SMART_TURN_MODEL_PATH = env_str("SMART_TURN_MODEL_PATH")
TURN_THRESHOLD = env_float("TURN_THRESHOLD", 0.5)
TURN_MIN_DELAY_MS = env_float("TURN_MIN_DELAY_MS", 200.0)
TURN_MAX_DELAY_MS = env_float("TURN_MAX_DELAY_MS", 1500.0)
TURN_SILENCE_MS = env_float("TURN_SILENCE_MS", 700.0)
# Speech must last this long to interrupt a reply (shorter sounds let it go on).
INTERRUPT_MIN_SPEECH_MS = env_float("INTERRUPT_MIN_SPEECH_MS", 250.0)
# Start the model when a turn is likely over but not yet confirmed (discarded if it goes on).
PREEMPTIVE_GENERATION = env_bool("PREEMPTIVE_GENERATION", True)

TTS_ENGINES = env_list("TTS_ENGINES", "edge,piper,espeak")
TTS_ENGINES_BY_LANGUAGE = {
    lang: [item.strip() for item in value.split(",") if item.strip()]
    for lang, value in _env_by_language("TTS_ENGINES_").items()
}
TTS_MAX_CHARS = env_int("TTS_MAX_CHARS", 2000)
TTS_CIRCUIT_SECONDS = env_float("TTS_CIRCUIT_SECONDS", 60.0)
TTS_CONNECT_TIMEOUT = env_float("TTS_CONNECT_TIMEOUT", 5.0)
TTS_CHUNK_TIMEOUT = env_float("TTS_CHUNK_TIMEOUT", 5.0)
TTS_EDGE_VOICES = dict(
    item.split("=", 1)
    for item in env_list("TTS_EDGE_VOICES", "es=es-ES-AlvaroNeural,en=en-US-AriaNeural")
    if "=" in item
)
TTS_EDGE_PROXY = env_str("TTS_EDGE_PROXY")
TTS_PIPER_MODEL = env_str("TTS_PIPER_MODEL")
TTS_ESPEAK_BINARY = env_str("TTS_ESPEAK_BINARY", "espeak-ng")
# espeak-ng inside the process (libespeak-ng; ~3 ms of CPU a sentence) rather than its program
# per sentence (~13 ms, isolated from the server). docs/configuration.md.
TTS_ESPEAK_IN_PROCESS = env_bool("TTS_ESPEAK_IN_PROCESS", True)
# Engines that run native code (Piper, libespeak-ng) run in supervised worker processes: this
# many per engine, a job killed (and its worker replaced) after this many seconds without audio,
# and at most this many jobs waiting for a worker (more are refused). docs/reliability.md.
TTS_WORKERS = env_int("TTS_WORKERS", 2)
TTS_WORKER_TIMEOUT = env_float("TTS_WORKER_TIMEOUT", 20.0)
TTS_WORKER_QUEUE = env_int("TTS_WORKER_QUEUE", 32)
# POST /api/tts jobs one user may run at once in one process (0: no cap); past it, 429.
TTS_CONCURRENT_PER_USER = env_int("TTS_CONCURRENT_PER_USER", 2)
# What reaches an engine: a unit of 1-4 characters repeated more than this is cut to this many,
# a "word" longer than this is split (0: off). espeak-ng crashes on some such texts.
TTS_REPEAT_MAX = env_int("TTS_REPEAT_MAX", 3)
TTS_WORD_MAX_CHARS = env_int("TTS_WORD_MAX_CHARS", 40)
SENTENCE_MAX_CHARS = env_int("SENTENCE_MAX_CHARS", 200)
# A reply's first spoken chunk may end at a clause (, : ; –) once it has this many words (0: off).
SENTENCE_FIRST_CLAUSE_WORDS = env_int("SENTENCE_FIRST_CLAUSE_WORDS", 4)
