"""The console's write credentials (auth.py) and its CSRF tokens (csrf.py), without a server:
which header signs in as which operator, what a misconfiguration is refused with at start, and
what a token is good for."""

from __future__ import annotations

import pytest

from sync_pipelines.console.auth import ConsoleAuth, ConsoleConfigError, Operator
from sync_pipelines.console.csrf import TOKEN_TTL_S, CsrfRefused, check_request, issue_token
from sync_pipelines.observability.redaction import redact_text
from sync_pipelines_tests.console.conftest import ADMIN_TOKEN, ORG_A_TOKEN, basic

WRITER = "writer-all-" + "w" * 32
A_WRITER = "writer-a-" + "x" * 32
ENV = {
    "SYNC_CONSOLE_TOKEN": ADMIN_TOKEN,
    "SYNC_CONSOLE_TENANT_TOKENS": f"org-a={ORG_A_TOKEN}",
    "SYNC_CONSOLE_WRITE_TOKEN": WRITER,
    "SYNC_CONSOLE_TENANT_WRITE_TOKENS": f"org-a={A_WRITER}",
}
SAME_ORIGIN = {"host": "console.internal:8091", "origin": "http://console.internal:8091"}


def test_write_credentials_sign_in_as_writers_by_bearer_and_basic_auth():
    auth = ConsoleAuth.from_env(ENV)
    for header in (f"Bearer {WRITER}", basic("writer", WRITER)["authorization"]):
        assert auth.authenticate(header) == Operator("writer (all organizations)", None, True)
    for header in (f"Bearer {A_WRITER}", basic("org-a", A_WRITER)["authorization"]):
        assert auth.authenticate(header) == Operator("writer of org-a", "org-a", True)
    custom = ConsoleAuth.from_env({**ENV, "SYNC_CONSOLE_WRITE_USER": "ops"})
    assert custom.authenticate(basic("ops", WRITER)["authorization"]).can_write
    assert custom.authenticate(basic("writer", WRITER)["authorization"]) is None
    # the read-only credentials stay read-only
    assert not auth.authenticate(f"Bearer {ADMIN_TOKEN}").can_write
    assert not auth.authenticate(f"Bearer {ORG_A_TOKEN}").can_write
    for header in (basic("org-b", A_WRITER)["authorization"], f"Bearer {WRITER}x"):
        assert auth.authenticate(header) is None


def test_short_malformed_or_shared_write_secrets_are_refused_at_start():
    with pytest.raises(ConsoleConfigError, match="SYNC_CONSOLE_WRITE_TOKEN is shorter than 16"):
        ConsoleAuth.from_env({"SYNC_CONSOLE_WRITE_TOKEN": "hunter2"})
    with pytest.raises(
        ConsoleConfigError, match=r"SYNC_CONSOLE_TENANT_WRITE_TOKENS\[org-a\] is shorter"
    ):
        ConsoleAuth.from_env({"SYNC_CONSOLE_TENANT_WRITE_TOKENS": "org-a=short"})
    with pytest.raises(ConsoleConfigError, match="SYNC_CONSOLE_TENANT_WRITE_TOKENS must be"):
        ConsoleAuth.from_env({"SYNC_CONSOLE_TENANT_WRITE_TOKENS": "x" * 40})
    with pytest.raises(ConsoleConfigError, match="one secret is configured for two"):
        ConsoleAuth.from_env({"SYNC_CONSOLE_TOKEN": WRITER, "SYNC_CONSOLE_WRITE_TOKEN": WRITER})
    assert ConsoleAuth.from_env({"SYNC_CONSOLE_WRITE_TOKEN": WRITER}).enabled


def test_write_secrets_are_registered_as_secrets():
    ConsoleAuth.from_env(ENV)
    assert WRITER not in redact_text(f"token {WRITER} and {A_WRITER}")
    assert A_WRITER not in redact_text(f"token {WRITER} and {A_WRITER}")


def _writers() -> tuple[Operator, Operator]:
    auth = ConsoleAuth.from_env(ENV)
    return auth.authenticate(f"Bearer {WRITER}"), auth.authenticate(f"Bearer {A_WRITER}")


def test_a_token_is_good_for_its_operator_only_and_for_a_while():
    writer, a_writer = _writers()
    token = issue_token(a_writer, now=1_000_000)
    check_request(a_writer, SAME_ORIGIN, token, now=1_000_000 + 60)
    with pytest.raises(CsrfRefused, match="not this operator's"):
        check_request(writer, SAME_ORIGIN, token, now=1_000_000 + 60)
    with pytest.raises(CsrfRefused, match="expired"):
        check_request(a_writer, SAME_ORIGIN, token, now=1_000_000 + TOKEN_TTL_S + 1)
    # a token outlives a restart: the key comes from the credential, not the process
    again = ConsoleAuth.from_env(ENV).authenticate(f"Bearer {A_WRITER}")
    check_request(again, SAME_ORIGIN, token, now=1_000_000 + 60)
    # read-only operators get no token, and no token passes for them
    reader = ConsoleAuth.from_env(ENV).authenticate(f"Bearer {ORG_A_TOKEN}")
    assert issue_token(reader) == ""
    with pytest.raises(CsrfRefused):
        check_request(reader, SAME_ORIGIN, token)


def test_the_request_must_come_from_the_consoles_own_host():
    _, a_writer = _writers()
    token = issue_token(a_writer)
    check_request(a_writer, {"host": "c:8091", "referer": "http://c:8091/console/x"}, token)
    # behind a proxy that names the public host
    check_request(
        a_writer,
        {
            "host": "127.0.0.1:8091",
            "x-forwarded-host": "ops.example",
            "origin": "https://ops.example",
        },
        token,
    )
    for headers in (
        {"host": "c:8091", "origin": "http://evil.example"},
        {"host": "c:8091", "origin": "null", "referer": "http://c:8091/console/x"},
        {"host": "c:8091", "referer": "http://evil.example/c:8091"},
        {"host": "c:8091"},
    ):
        with pytest.raises(CsrfRefused):
            check_request(a_writer, headers, token)
