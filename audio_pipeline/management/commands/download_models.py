"""`python manage.py download_models es en`: fetch Vosk small models with checksums."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from audio_pipeline.models_download import CATALOG, ModelDownloadError, download_model


class Command(BaseCommand):
    help = (
        "Download the Vosk project's small models for the given languages into VOZ_DATA_DIR/models."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("languages", nargs="+", help=f"Any of: {', '.join(sorted(CATALOG))}")
        parser.add_argument("--url-base", default=None, help="Override VOSK_MODELS_URL.")
        parser.add_argument("--timeout", type=float, default=30.0)

    def handle(self, *args, languages: list[str], url_base: str | None, timeout: float, **opts):
        for language in languages:
            try:
                path = download_model(language, base_url=url_base, timeout=timeout)
            except ModelDownloadError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"{language}: {path}")
            if CATALOG[language].sha256 is None:
                self.stdout.write(
                    self.style.WARNING(f"{language}: no pinned SHA-256; size was checked.")
                )
