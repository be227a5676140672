from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_delete


class VoiceConfig(AppConfig):
    name = "voice"
    verbose_name = "Real-time voice loop"

    def ready(self) -> None:
        from characters.models import CharacterInstance

        # Live sessions and observers of a deleted instance close at once (voice/gone_watch.py).
        # Only the instance: a receiver on Conversation would make every cascade load them all.
        post_delete.connect(_instance_deleted, sender=CharacterInstance, weak=False)


def _instance_deleted(**_kwargs) -> None:
    from .gone_watch import wake_all

    transaction.on_commit(wake_all)
