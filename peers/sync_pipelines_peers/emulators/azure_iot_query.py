"""The IoT Hub query language, as much of it as a sync needs, and the continuation tokens that
page through a query's results (PROVIDERS.md §3.2, §3.8).

Supported: `SELECT * FROM devices [WHERE <cond> [AND|OR <cond>]...]`, where a condition is
`<path> = | != | <> <literal>`, a path is a twin field (`deviceId`, `status`,
`connectionState`, `tags.location.region`, `properties.reported.firmware.version`, ...) and
a literal is a 'single-quoted' string, a number, true, false or null. AND binds tighter than
OR; parentheses and projections are refused with a 400, as an unsupported query.
Comparisons follow the hub: a path the twin does not have makes the condition false.

Continuation tokens are opaque to clients: the next twin index to scan, bound to the query
text and signed, so a tampered or foreign token is a 400 rather than a wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<op>!=|<>|=)
      | (?P<star>\*)
      | (?P<word>[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*)
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)
_UNDEFINED = object()


class QueryError(ValueError):
    """The query is not valid (or not something the emulator supports)."""


@dataclass(frozen=True, slots=True)
class Condition:
    path: tuple[str, ...]
    negated: bool
    value: Any

    def holds(self, twin: JsonDict) -> bool:
        actual = _lookup(twin, self.path)
        if actual is _UNDEFINED:
            return False
        equal = type(actual) is type(self.value) and actual == self.value
        if isinstance(actual, int | float) and isinstance(self.value, int | float):
            # bool is an int in Python, not in the hub's query language
            equal = (
                not isinstance(actual, bool)
                and not isinstance(self.value, bool)
                and actual == self.value
            )
        return equal != self.negated


@dataclass(frozen=True, slots=True)
class TwinQuery:
    """A parsed query: OR of AND-groups of conditions (no groups: every twin)."""

    text: str
    any_of: tuple[tuple[Condition, ...], ...] = ()

    @property
    def filtered(self) -> bool:
        return bool(self.any_of)

    def matches(self, twin: JsonDict) -> bool:
        if not self.any_of:
            return True
        return any(all(c.holds(twin) for c in group) for group in self.any_of)


def _lookup(twin: JsonDict, path: tuple[str, ...]) -> Any:
    node: Any = twin
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _UNDEFINED
        node = node[part]
    return node


class _Parser:
    """Recursive descent over the token list; every error says what was expected."""

    def __init__(self, text: str) -> None:
        self.tokens = [
            (m.lastgroup, m.group(m.lastgroup)) for m in _TOKEN.finditer(text) if m.lastgroup
        ]
        self.position = 0

    @property
    def done(self) -> bool:
        return self.position >= len(self.tokens)

    def peek_kind(self) -> str | None:
        return None if self.done else self.tokens[self.position][0]

    def take(
        self, expected: str, kind: str | None = None, keyword: str | None = None
    ) -> tuple[str, str]:
        if self.done:
            raise QueryError(f"unexpected end of query, expected {expected}")
        token_kind, value = self.tokens[self.position]
        if (kind is not None and token_kind != kind) or (
            keyword is not None and value.upper() != keyword
        ):
            raise QueryError(f"expected {expected} but found {value!r}")
        self.position += 1
        return token_kind, value

    def query(self, text: str) -> TwinQuery:
        self.take("SELECT", "word", "SELECT")
        if self.peek_kind() != "star":
            raise QueryError("only SELECT * is supported by the emulator (no projections)")
        self.take("*", "star")
        self.take("FROM", "word", "FROM")
        _, collection = self.take("a collection", "word")
        if collection.lower() != "devices":
            raise QueryError(f"unknown collection {collection!r}: the emulator queries 'devices'")
        if self.done:
            return TwinQuery(text)
        self.take("WHERE", "word", "WHERE")
        groups: list[tuple[Condition, ...]] = []
        group = [self.condition()]
        while not self.done:
            _, joiner = self.take("AND or OR", "word")
            if joiner.upper() == "OR":
                groups.append(tuple(group))
                group = []
            elif joiner.upper() != "AND":
                raise QueryError(f"expected AND or OR but found {joiner!r}")
            group.append(self.condition())
        groups.append(tuple(group))
        return TwinQuery(text, tuple(groups))

    def condition(self) -> Condition:
        _, path = self.take("a twin path such as tags.site or properties.reported.x", "word")
        if path.upper() in ("AND", "OR", "WHERE", "NOT"):
            raise QueryError(f"expected a twin path but found {path!r}")
        _, op = self.take("=, != or <>", "op")
        kind, raw = self.take(f"a literal after {path} {op}")
        value: Any
        if kind == "string":
            value = raw[1:-1].replace("''", "'")
        elif kind == "number":
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        elif kind == "word" and raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        elif kind == "word" and raw.lower() == "null":
            value = None
        else:
            raise QueryError(
                f"expected a literal after {path} {op} but found {raw!r} "
                "(strings take single quotes)"
            )
        return Condition(tuple(path.split(".")), negated=op != "=", value=value)


def parse_query(text: str) -> TwinQuery:
    """Parse a query or raise QueryError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError("the query is empty")
    return _Parser(text).query(text)


# ---------------------------------------------------------------------------------------------
# Continuation tokens
# ---------------------------------------------------------------------------------------------


class ContinuationError(ValueError):
    """The continuation token is not one this hub issued for this query (or has expired)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ContinuationCodec:
    """Makes and reads continuation tokens: `<payload>.<mac>`, both base64url."""

    def __init__(self, secret: bytes, ttl_s: float | None = None) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    @staticmethod
    def _query_hash(query_text: str) -> str:
        return hashlib.sha256(query_text.encode()).hexdigest()[:16]

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()[:12])

    def encode(self, next_index: int, query_text: str, now: float | None = None) -> str:
        body = {"i": next_index, "q": self._query_hash(query_text), "t": int(now or time.time())}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def decode(self, token: str, query_text: str, now: float | None = None) -> int:
        payload, sep, mac = token.strip().partition(".")
        if not sep or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise ContinuationError(
                "the continuation token is invalid (not issued by this hub, or altered)"
            )
        try:
            body = json.loads(_unb64(payload))
            next_index, query_hash, issued = int(body["i"]), body["q"], int(body["t"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ContinuationError("the continuation token is invalid") from exc
        if query_hash != self._query_hash(query_text):
            raise ContinuationError("the continuation token belongs to a different query")
        if self.ttl_s is not None and (now or time.time()) - issued > self.ttl_s:
            raise ContinuationError("the continuation token has expired; run the query again")
        return next_index
