"""schemathesis against /api/openapi.json on a real daphne (issue 14 item 7): every operation,
generated valid and invalid input, 0 server errors and every answer as the schema documents it.

Bounded: SCHEMATHESIS_MAX_EXAMPLES cases per operation and phase (default 10; ~1,200 cases,
about 2 minutes here). The case count is printed. Checks: no 5xx, documented status codes,
content types and headers, bodies matching the schema, and invalid input refused. Not checked:
`positive_data_acceptance` (the schema cannot say every rule: a language tag must be one an
engine speaks, a conversation must be open) and the stateful authorization checks (they need
two users' credentials). Single worker: CPython 3.11's parser is not thread-safe in hypothesis.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI
from tests.servers import fake_model_env, prepare_database, start_daphne

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)


@pytest.fixture
def served_api(tmp_path):
    fake = FakeOpenAI().start()
    env = fake_model_env(
        tmp_path,
        fake,
        API_RATE_LIMIT="",  # The run sends hundreds of requests a minute.
        TTS_ENGINES="espeak",
        LLM_RETRIES="0",
        LOG_LEVEL="WARNING",
    )
    credentials = prepare_database(env)
    server = start_daphne(env)
    try:
        yield server, credentials["token"]
    finally:
        server.stop()
        fake.stop()


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(served_api, capsys, tmp_path):
    server, token = served_api
    examples = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10")
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"{server.http}/api/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--max-examples",
            examples,
            "--workers",
            "1",
            "--seed",
            "14",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,  # Its cache (.schemathesis/) stays out of the checkout.
    )
    summary = re.search(r"(\d+) generated, (.*)", done.stdout)
    with capsys.disabled():
        print(f"\nschemathesis: {summary[0] if summary else 'no summary'} ({examples}/operation)")
    assert done.returncode == 0, done.stdout[-6000:] + server.output()[-3000:]
    assert summary and int(summary[1]) >= 500
    assert "Traceback" not in server.output()
