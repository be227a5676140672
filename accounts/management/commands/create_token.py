"""`python manage.py create_token USERNAME [--name N] [--create-user]`: prints a new API token once."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.services import token_create
from realtime.text_safety import unsafe_reason


class Command(BaseCommand):
    help = "Create an API token for a user and print it once (only its hash is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="default", help="A label for the token.")
        parser.add_argument(
            "--create-user", action="store_true", help="Create the user if it does not exist."
        )

    def handle(self, *args, username: str, name: str, create_user: bool, **options) -> None:
        for label, value in (("username", username), ("--name", name)):
            if reason := unsafe_reason(value):
                raise CommandError(f"{label}: {reason} (check the terminal's encoding).")
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"No user named {username!r} (use --create-user to create it).")
            user = User.objects.create_user(username=username)
        issued = token_create(user=user, name=name)
        self.stdout.write(issued.plaintext)
