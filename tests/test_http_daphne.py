"""HTTP methods and log redaction over a real daphne (issue 21 item 11): the transport matters,
daphne writes the access log and drops a HEAD answer's body itself."""

from __future__ import annotations

import asyncio
import http.client
import json

import pytest
import websockets

from tests.servers import prepare_database, server_env, start_daphne


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    env = server_env(tmp_path_factory.mktemp("http-doors"))
    credentials = prepare_database(env)
    server = start_daphne(env)
    try:
        yield server, credentials["token"]
    finally:
        server.stop()


def ask(server, method: str, path: str, token: str | None = None):
    """(status, headers, body) of one request on its own connection."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        connection.request(method, path, headers=headers)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def test_head_is_answered_on_get_routes_and_405_is_json_with_allow(served):
    server, token = served
    for path, status in (
        ("/api/voices", 200),
        ("/api/characters", 200),
        ("/healthz", 200),
        ("/readyz", 200),
        ("/", 302),  # the page sends a visitor to sign in, as GET does
        ("/accounts/login/", 200),
    ):
        got_status, got_headers, got_body = ask(server, "GET", path, token)
        head_status, head_headers, head_body = ask(server, "HEAD", path, token)
        assert head_status == got_status == status, path
        assert head_body == b"", path
        assert head_headers["content-type"] == got_headers["content-type"], path
        if status == 200:
            assert int(head_headers["content-length"]) == len(got_body), path
    for method, path, allow in (
        ("POST", "/api/voices", "GET, HEAD"),
        ("POST", "/readyz", "GET, HEAD"),
        ("PUT", "/healthz", "GET, HEAD"),
        ("DELETE", "/api/characters", "GET, HEAD, POST"),
    ):
        status, headers, body = ask(server, method, path, token)
        assert status == 405, path
        assert headers["content-type"] == "application/json", path
        assert set(headers["allow"].split(", ")) == set(allow.split(", ")), path
        assert json.loads(body)["code"] == "method_not_allowed", path


def test_trace_and_methods_a_route_does_not_take_are_a_json_405_before_csrf(served):
    """Red team D over daphne: TRACE on the docs answered 200, PUT on a page the HTML CSRF 403."""
    server, token = served
    for method, path, allow in (
        ("TRACE", "/api/docs", "GET, HEAD"),
        ("TRACE", "/api/openapi.json", "GET, HEAD"),
        ("PUT", "/api/openapi.json", "GET, HEAD"),
        ("DELETE", "/", "GET, HEAD"),
        ("PUT", "/accounts/login/", "GET, HEAD, POST, OPTIONS"),
        ("TRACE", "/admin/", "GET, HEAD, POST"),
        ("TRACE", "/api/voices", "GET, HEAD"),
        ("TRACE", "/healthz", "GET, HEAD"),
    ):
        status, headers, body = ask(server, method, path, token)
        assert status == 405, (method, path, status)
        assert headers["content-type"] == "application/json", (method, path)
        assert set(headers["allow"].split(", ")) == set(allow.split(", ")), (method, path)
        assert json.loads(body)["code"] == "method_not_allowed", (method, path)
    status, _, _ = ask(server, "POST", "/accounts/login/")  # no CSRF token: still refused
    assert status == 403


async def _authenticated(server, query: str) -> bool:
    """Whether the voice socket accepts the credentials in `query` (4401 closes it)."""
    async with websockets.connect(f"{server.ws}/ws/voice/?{query}") as ws:
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), 2))
        except TimeoutError:
            return True  # open, waiting for session.start
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code != 4401
        return message.get("code") != "unauthorized"


async def test_every_spelling_of_a_token_in_a_query_is_redacted_from_the_logs(served):
    server, token = served
    encoded = token.replace("_", "%5F", 1)
    # The auth layer decodes the name: `%74oken` is `token` to it, so it is a real credential.
    assert await _authenticated(server, f"%74oken={token}")
    assert not await _authenticated(server, "%74oken=voz_wrong")
    for query in (
        f"%74oken={token}&limit=5",
        f"TOKEN={token}",
        f"access_token={token}",
        f"%2574oken={token}",
        f"x={encoded}",
    ):
        assert ask(server, "GET", f"/api/characters?{query}", token)[0] == 200
    assert ask(server, "GET", f"/nothing/{token}?a=1", token)[0] == 404  # our own log's line
    await asyncio.sleep(0.5)  # daphne writes the access line after the answer
    log = server.output()
    assert token not in log and encoded not in log, log
    assert '"GET /api/characters?%74oken=[redacted]&limit=5" 200' in log, log
    assert '"GET /api/characters?TOKEN=[redacted]" 200' in log
    assert '"GET /api/characters?access_token=[redacted]" 200' in log
    assert "Not Found: /nothing/[redacted]" in log, log


def test_a_content_length_of_thousands_of_digits_is_refused_not_a_500(served):
    server, token = served
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/stt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {token}\r\nContent-Type: audio/wav\r\n".encode()
            + b"Content-Length: "
            + b"9" * 5000
            + b"\r\n\r\n"
        )
        status_line = sock.recv(200).split(b"\r\n", 1)[0]
    # Twisted refuses the header (400, or the connection closed), long before Django reads it.
    assert status_line in (b"", b"HTTP/1.1 400 Bad Request"), status_line
    assert ask(server, "GET", "/healthz")[0] == 200
    assert "Traceback" not in server.output()


def test_form_bodies_are_left_to_django_not_parsed_by_twisted(served):
    """Twisted parsed every POST form body on the event loop, without Django's limits, and
    answered a bare 400 (no body, no JSON) when it could not: a multipart body without a
    boundary. Now Django reads the body and the API says what is wrong (realtime/form_bodies.py)."""
    server, token = served
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(
            "POST",
            "/api/stt",
            body=b"not a form",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data"},
        )
        answer = connection.getresponse()
        status, content_type, body = answer.status, answer.getheader("Content-Type"), answer.read()
    finally:
        connection.close()
    assert status == 400
    assert content_type == "application/json; charset=utf-8", (content_type, body)
    error = json.loads(body)
    assert error["code"] == "bad_request"
    assert "boundary" in error["detail"]
    assert ask(server, "GET", "/healthz")[0] == 200
