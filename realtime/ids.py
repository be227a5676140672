"""Identifiers made on the event loop's hot path (response ids, request idempotency keys).

`uuid.uuid4()` reads 16 bytes from the kernel (`getrandom`), releasing the GIL around the
call; under load the event loop then waits to take the GIL back behind the socket threads
(uuid4 was 5 % of the event loop's samples at 200 sessions, nearly all of it that wait). These
ids need to be unique, not unguessable (they are never credentials: tokens come from
`secrets`), so they come from `random`, seeded once from the kernel.
"""

from __future__ import annotations

import random
import uuid

_random = random.Random()  # Its own generator, seeded from os.urandom at import.


def new_id() -> str:
    """A random (version 4) UUID as 32 hex digits."""
    return uuid.UUID(int=_random.getrandbits(128), version=4).hex
