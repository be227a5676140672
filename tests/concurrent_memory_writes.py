"""`python -m tests.concurrent_memory_writes N`: N threads replace one instance's memory at once
through the service, on the database the settings name. Prints "N ok, F failed, R revisions"."""

from __future__ import annotations

import os
import sys
import threading

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402

from characters import services  # noqa: E402
from characters.models import CharacterInstance, MemoryRevision  # noqa: E402


def main(writers: int) -> None:
    owner = get_user_model().objects.create_user(username="writer")
    character = services.character_create(owner=owner, name="C", description="d")
    instance = services.instance_create(owner=owner, character=character, name="busy")
    connection.close()
    failures: list[str] = []
    start = threading.Barrier(writers)

    def write(index: int) -> None:
        try:
            start.wait()
            target = CharacterInstance.objects.get(pk=instance.pk)
            services.memory_update(instance=target, text=f"memory {index}")
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    revisions = MemoryRevision.objects.filter(instance=instance).count()
    print(f"{writers - len(failures)} ok, {len(failures)} failed, {revisions + 1} revisions")
    for failure in sorted(set(failures)):
        print(failure, file=sys.stderr)


if __name__ == "__main__":
    main(int(sys.argv[1]))
