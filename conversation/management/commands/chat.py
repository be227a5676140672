"""`python manage.py chat INSTANCE_NAME [--user U]`: talk to an instance in the terminal.

Reads one message per line from stdin (piped input works), streams the reply as it arrives.
`/end` ends the conversation and consolidates memory; so does end of input.
"""

from __future__ import annotations

import asyncio
import sys

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from characters.models import CharacterInstance
from conversation import engines, services
from conversation.background import wait_background
from conversation.engines import get_engine
from conversation.errors import ConversationEnded, MessageNotStored, TurnInProgress
from conversation.turns import reply_turn


class Command(BaseCommand):
    help = "Chat with a character instance in the terminal, streaming its replies."

    def add_arguments(self, parser) -> None:
        parser.add_argument("instance", help="The instance's unique name.")
        parser.add_argument("--user", help="Username to chat as (default: the instance's owner).")
        parser.add_argument(
            "--no-consolidate", action="store_true", help="Do not update memory at the end."
        )

    def handle(self, *args, **options) -> None:
        try:
            instance = (
                CharacterInstance.objects.select_related("character", "owner")
                .named(options["instance"])
                .get()
            )
        except CharacterInstance.DoesNotExist as exc:
            raise CommandError(f"No instance named {options['instance']!r}.") from exc
        user = instance.owner
        if options["user"]:
            try:
                user = get_user_model().objects.get(username=options["user"])
            except get_user_model().DoesNotExist as exc:
                raise CommandError(f"No user {options['user']!r}.") from exc
            if user != instance.owner and not user.is_staff:
                raise CommandError(f"{user} may not chat with {instance.name}.")
        engines.run(self._chat(instance, user, not options["no_consolidate"]))

    async def _chat(self, instance: CharacterInstance, user, consolidate: bool) -> None:
        engine = get_engine()
        interactive = sys.stdin.isatty()
        self.stdout.write(
            f"Chatting with {instance.name} ({engine.name}: {engine.default_model()}). "
            "Type /end or press Ctrl+D to finish."
        )
        conversation_id = None
        while True:
            if interactive:
                self.stdout.write("you> ", ending="")
                self.stdout.flush()
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line or line.strip() == "/end":
                break
            if not line.strip():
                continue
            turn = reply_turn(
                instance=instance,
                user=user,
                text=line,
                conversation_id=conversation_id,
                channel="cli",
                engine=engine,
            )
            try:
                async with turn:
                    conversation_id = turn.conversation_id
                    self.stdout.write(f"{instance.name}> ", ending="")
                    async for delta in turn.deltas():
                        self.stdout.write(delta, ending="")
                        self.stdout.flush()
                    self.stdout.write("")
            except ValidationError as exc:
                self.stderr.write("; ".join(exc.messages))
                continue
            except (ConversationEnded, MessageNotStored, TurnInProgress) as exc:
                self.stderr.write(f"[{exc.code}] {exc}")
                continue
            if turn.error is not None:
                self.stderr.write(f"[{turn.error.code}] {turn.error}")
        if conversation_id is None:
            return
        conversation = await sync_to_async(lambda: instance.conversations.get(pk=conversation_id))()
        if consolidate and settings.MEMORY_CONSOLIDATION:
            self.stdout.write("Updating memory…")
        await services.conversation_end(conversation=conversation, consolidate=consolidate)
        await wait_background()
        self.stdout.write(f"Conversation {conversation_id} ended.")
