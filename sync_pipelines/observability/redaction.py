"""The redaction rules, in one place: every log line, activity row, metadata value and error
message passes through here before it leaves the process or reaches the store.

Three layers: values of sensitive keys/headers are replaced whole; secret-shaped substrings
(bearer tokens, SAS signatures, connection-string keys, URL passwords, `key=` query values) are
masked; and every secret value the process resolved from the environment is masked wherever it
appears, whatever shape it has.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"

_SENSITIVE_KEY = re.compile(
    r"(authorization|api[-_]?key|apikey|token|secret|passw|pwd|cookie|signature|\bsig\b|^sig$|"
    r"sas|connection[-_]?string|credential|private[-_]?key|access[-_]?key|sharedaccesskey|dsn)",
    re.IGNORECASE,
)
# Keys that look sensitive by name but carry no secret (ids, counts, metadata about tokens).
_SAFE_KEYS = frozenset(
    {"request_id", "x-request-id", "token_count", "secret_refs", "secret_ref", "sas_ttl_s"}
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), rf"\1 {REDACTED}"),
    (re.compile(r"SharedAccessSignature\s+[^\s\"',]+"), f"SharedAccessSignature {REDACTED}"),
    (
        re.compile(r"(?i)\b(SharedAccessKey|AccountKey|Password|Pwd)=([^;\s\"']+)"),
        rf"\1={REDACTED}",
    ),
    (
        re.compile(
            r"(?i)([?&;\s\"'](?:sig|signature|api[_-]?key|apikey|token|access_token|password|secret)=)([^&;\s\"']+)"
        ),
        rf"\1{REDACTED}",
    ),
    (
        re.compile(
            r"(?i)\b(x-api-key|api[_-]?key|authorization)([\"']?\s*[:=]\s*[\"']?)([^\s\"',}]{4,})"
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"(://[^:/@\s]+:)([^@/\s]+)(@)"), rf"\1{REDACTED}\3"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), REDACTED),
)
# Every match of a pattern above contains one of these (case-insensitively), so a text without
# any can skip them all: one search instead of seven substitutions on the common case (header
# values, ids, URLs without credentials), which every provider call pays several times over.
# An ASCII text is searched lower-cased with the case-sensitive form (exactly the same answer
# for ASCII, ten times faster than an ignore-case alternation); any other text case-insensitively
# (which also folds the likes of the Kelvin sign and the long s onto ASCII letters).
_TRIGGER = re.compile(
    r"bearer|basic|sharedaccess|accountkey|passw|pwd|sig|api[_-]?key|token|secret|"
    r"authorization|@|whsec_"
)
_TRIGGER_ANY_CASE = re.compile(_TRIGGER.pattern, re.IGNORECASE)

_known_secrets: set[str] = set()
_known_lock = threading.Lock()
_known_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Mask this exact value everywhere from now on (called when a secret is resolved)."""
    global _known_pattern
    if not value or len(value) < 4:
        return
    with _known_lock:
        if value in _known_secrets:
            return
        _known_secrets.add(value)
        # longest first so a secret containing another is masked whole
        ordered = sorted(_known_secrets, key=len, reverse=True)
        _known_pattern = re.compile("|".join(re.escape(s) for s in ordered))


@functools.lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    # cached: the same few header names and metadata keys come back on every call
    return key.lower() not in _SAFE_KEYS and bool(_SENSITIVE_KEY.search(key))


def redact_text(text: str) -> str:
    if not text:
        return text
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if not _may_hold_a_secret(text):
        return text
    for regex, replacement in _PATTERNS:
        text = regex.sub(replacement, text)
    return text


def _may_hold_a_secret(text: str) -> bool:
    if text.isascii():
        return _TRIGGER.search(text.lower()) is not None
    return _TRIGGER_ANY_CASE.search(text) is not None


def redact(value: Any) -> Any:
    """Redact any JSON-like value: dicts by key and value, lists item by item, strings by text."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and is_sensitive_key(k) and v not in (None, "")
                else redact(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def redact_headers(headers: Mapping[str, str] | Any) -> dict[str, str]:
    return {
        k: (REDACTED if is_sensitive_key(k) else redact_text(v)) for k, v in dict(headers).items()
    }


def redact_url(url: str) -> str:
    """A URL fit for an activity row: sensitive query values and userinfo passwords masked."""
    if "?" not in url and "#" not in url:
        return redact_text(url)  # no query: the text rules alone (they mask userinfo passwords)
    parts = urlsplit(url)
    query = urlencode(
        [
            (k, REDACTED if is_sensitive_key(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="[]",
    )
    return redact_text(urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment)))
