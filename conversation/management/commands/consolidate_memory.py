"""`python manage.py consolidate_memory [INSTANCE_NAME] [--idle]`: update memory from conversations.

With a name: that instance's conversations not yet consolidated (open ones too). With `--idle`:
first end conversations idle for MEMORY_IDLE_SECONDS. Without a name: every instance with an
ended conversation not yet consolidated. Suitable for cron.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from characters.models import CharacterInstance
from conversation import engines
from conversation.memory import consolidate_idle, memory_consolidate


class Command(BaseCommand):
    help = "Rewrite instance memory from conversations (the model consolidates them)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("instance", nargs="?", help="Only this instance (unique name).")
        parser.add_argument(
            "--idle",
            action="store_true",
            help="End idle conversations first (MEMORY_IDLE_SECONDS).",
        )

    def handle(self, *args, **options) -> None:
        if options["instance"]:
            try:
                instance = CharacterInstance.objects.named(options["instance"]).get()
            except CharacterInstance.DoesNotExist as exc:
                raise CommandError(f"No instance named {options['instance']!r}.") from exc
            result = engines.run(memory_consolidate(instance_id=instance.pk, include_open=True))
            self.stdout.write(
                f"{instance.name}: {result.conversations} conversation(s) consolidated; "
                f"memory is {len(result.memory)} characters."
            )
            if result.failed:
                for failure in result.failed:
                    self.stderr.write(f"{failure['conversation_id']}: {failure['error']}")
                raise CommandError(
                    f"{len(result.failed)} conversation(s) failed; memory unchanged by them."
                )
            return
        if not options["idle"]:
            self.stdout.write("Consolidating ended conversations (add --idle to end idle ones).")
        count = engines.run(consolidate_idle(end_idle=options["idle"]))
        self.stdout.write(f"{count} instance(s) consolidated.")
