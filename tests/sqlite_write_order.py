"""`python -m tests.sqlite_write_order`: on the file database the settings name, checks the
process write lock of realtime/sqlite/base.py (tests/test_sqlite_writes.py runs it). Prints
one JSON object of what it saw."""

from __future__ import annotations

import json
import os
import threading
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402

from characters.models import Character  # noqa: E402
from realtime.sqlite.base import write_lock  # noqa: E402


def main() -> dict:
    seen: dict = {"engine": connection.settings_dict["ENGINE"]}
    lock = write_lock(str(connection.settings_dict["NAME"]))
    owner = get_user_model().objects.create_user(username="writer")

    def create(name: str) -> None:
        Character.objects.create(name=name, description="A keeper.", owner=owner)

    with transaction.atomic():
        create("Held")
        seen["held_in_transaction"] = lock.locked()
    seen["free_after_commit"] = not lock.locked()
    try:
        with transaction.atomic():
            create("Rolled")
            raise RuntimeError("the caller failed")
    except RuntimeError:
        pass
    seen["free_after_rollback"] = not lock.locked()
    with transaction.atomic():
        create("Dropped")
        connection.close()  # Closed mid-transaction: nothing written, nothing held.
        seen["free_after_close"] = not lock.locked()

    events: list[tuple[str, float]] = []
    first_in = threading.Event()

    def first() -> None:
        with transaction.atomic():
            create("First")
            first_in.set()
            time.sleep(0.24)  # The default busy handler would next look at 328 ms.
            events.append(("first committing", time.monotonic()))
        connections.close_all()

    def second() -> None:
        first_in.wait(5)
        with transaction.atomic():
            events.append(("second began", time.monotonic()))
            create("Second")
        connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    seen["order"] = [name for name, _ in events]
    seen["second_began_after_ms"] = round((events[-1][1] - events[0][1]) * 1000, 1)
    seen["names"] = sorted(Character.objects.values_list("name", flat=True))
    seen["free_at_end"] = not lock.locked()
    return seen


if __name__ == "__main__":
    print(json.dumps(main()))
