"""Who may open the console, from the environment only; no default credentials.

- `SYNC_CONSOLE_TOKEN`: a bearer token of an operator who sees every organization;
- `SYNC_CONSOLE_PASSWORD` (user `SYNC_CONSOLE_USER`, default `operator`): the same operator by
  basic auth (what a browser prompts for);
- `SYNC_CONSOLE_TENANT_TOKENS`: `org-a=<secret>,org-b=<secret>` — one credential per
  organization: the secret alone as a bearer token, or basic auth with the organization id as
  user name. Such an operator sees that organization only.

Those operators only read. Write credentials are separate, for operators who may also replay
and quarantine dead letters (`Operator.can_write`):
- `SYNC_CONSOLE_WRITE_TOKEN`: every organization; a bearer token, or basic auth as
  `SYNC_CONSOLE_WRITE_USER` (default `writer`);
- `SYNC_CONSOLE_TENANT_WRITE_TOKENS`: `org-a=<secret>,...`, one organization each; bearer, or
  basic auth with the organization id as user name.
A secret may serve one credential only (a write secret equal to a read one is refused).

Secrets shorter than 16 characters are refused at start-up. With none configured the console
answers 503 saying how to enable it; with some configured, a request without valid credentials
gets 401. Every presented credential is compared with every configured one in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from sync_pipelines.observability.redaction import register_secret

TOKEN_ENV = "SYNC_CONSOLE_TOKEN"
USER_ENV = "SYNC_CONSOLE_USER"
PASSWORD_ENV = "SYNC_CONSOLE_PASSWORD"
TENANT_TOKENS_ENV = "SYNC_CONSOLE_TENANT_TOKENS"
WRITE_TOKEN_ENV = "SYNC_CONSOLE_WRITE_TOKEN"
WRITE_USER_ENV = "SYNC_CONSOLE_WRITE_USER"
TENANT_WRITE_TOKENS_ENV = "SYNC_CONSOLE_TENANT_WRITE_TOKENS"
DEFAULT_USER = "operator"
DEFAULT_WRITE_USER = "writer"
MIN_SECRET_LENGTH = 16
REALM = 'Basic realm="sync-pipelines console", charset="UTF-8"'


class ConsoleConfigError(ValueError):
    """The console's credentials are configured wrongly (checked when the console starts)."""


@dataclass(frozen=True, slots=True)
class Operator:
    """An authenticated console user; `organization_id` None means every organization;
    `can_write`: may replay and quarantine dead letters (a write credential)."""

    name: str
    organization_id: str | None
    can_write: bool = False
    #: signs this operator's CSRF tokens (console/csrf.py); derived from the credential's
    #: secret, so tokens outlive a restart and die with the secret
    csrf_key: bytes = field(default=b"", repr=False, compare=False)

    @property
    def scoped(self) -> bool:
        return self.organization_id is not None


@dataclass(frozen=True, slots=True)
class _Credential:
    operator: Operator
    #: sha256 of the basic-auth user (None: bearer only) and of the secret: equal lengths, so
    #: compare_digest reveals nothing about either
    user_digest: bytes | None
    secret_digest: bytes
    bearer: bool


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class ConsoleAuth:
    """The configured credentials; `authenticate` maps an Authorization header to an operator."""

    def __init__(self, credentials: list[_Credential]) -> None:
        self._credentials = credentials

    @property
    def enabled(self) -> bool:
        return bool(self._credentials)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsoleAuth:
        env = os.environ if environ is None else environ
        credentials: list[_Credential] = []
        everyone = Operator(name="operator (all organizations)", organization_id=None)
        if token := env.get(TOKEN_ENV):
            credentials.append(_credential(everyone, None, _checked(TOKEN_ENV, token), True))
        if password := env.get(PASSWORD_ENV):
            user = env.get(USER_ENV) or DEFAULT_USER
            credentials.append(_credential(everyone, user, _checked(PASSWORD_ENV, password), False))
        for org, secret in _tenant_tokens(TENANT_TOKENS_ENV, env.get(TENANT_TOKENS_ENV) or ""):
            tenant = Operator(name=f"operator of {org}", organization_id=org)
            credentials.append(_credential(tenant, org, secret, True))
        if token := env.get(WRITE_TOKEN_ENV):
            writer = Operator("writer (all organizations)", None, can_write=True)
            user = env.get(WRITE_USER_ENV) or DEFAULT_WRITE_USER
            credentials.append(_credential(writer, user, _checked(WRITE_TOKEN_ENV, token), True))
        for org, secret in _tenant_tokens(
            TENANT_WRITE_TOKENS_ENV, env.get(TENANT_WRITE_TOKENS_ENV) or ""
        ):
            writer = Operator(f"writer of {org}", org, can_write=True)
            credentials.append(_credential(writer, org, secret, True))
        _refuse_shared_secrets(credentials)
        return cls(credentials)

    def authenticate(self, authorization: str | None) -> Operator | None:
        scheme, _, value = (authorization or "").partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and value:
            user, secret = None, value
        elif scheme == "basic" and value:
            try:
                user, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            if not sep:
                return None
        else:
            return None
        user_digest, secret_digest = (_digest(user) if user is not None else None), _digest(secret)
        found: Operator | None = None
        # every credential is compared, whichever matches: the time taken says nothing
        for cred in self._credentials:
            secret_ok = hmac.compare_digest(cred.secret_digest, secret_digest)
            if user_digest is None:
                user_ok = cred.bearer
            else:
                user_ok = cred.user_digest is not None and hmac.compare_digest(
                    cred.user_digest, user_digest
                )
            if secret_ok and user_ok and found is None:
                found = cred.operator
        return found


def _credential(operator: Operator, user: str | None, secret: str, bearer: bool) -> _Credential:
    """A credential of `operator`, who signs CSRF tokens with a key derived from its secret."""
    key = hmac.new(secret.encode(), b"sync-pipelines console csrf", hashlib.sha256).digest()
    signing = Operator(operator.name, operator.organization_id, operator.can_write, key)
    return _Credential(
        signing, _digest(user) if user is not None else None, _digest(secret), bearer
    )


def _refuse_shared_secrets(credentials: list[_Credential]) -> None:
    """One secret, one credential: a write secret equal to a read one would sign in as
    whichever came first."""
    seen: dict[bytes, str] = {}
    for cred in credentials:
        other = seen.setdefault(cred.secret_digest, cred.operator.name)
        if other != cred.operator.name:
            raise ConsoleConfigError(
                f"one secret is configured for two console credentials ({other!r} and "
                f"{cred.operator.name!r}): give each credential a secret of its own"
            )


def _checked(name: str, secret: str) -> str:
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConsoleConfigError(
            f"{name} is shorter than {MIN_SECRET_LENGTH} characters: use a long random value "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    register_secret(secret)  # never shown, whatever row or log line it reaches
    return secret


def _tenant_tokens(name: str, value: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        org, sep, secret = item.partition("=")
        if not sep or not org.strip():
            raise ConsoleConfigError(
                f"{name} must be `organization_id=secret[,...]`; an item has no "
                "`organization_id=` part"
            )
        pairs.append((org.strip(), _checked(f"{name}[{org.strip()}]", secret.strip())))
    return pairs
