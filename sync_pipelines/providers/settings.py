"""Typed integration settings: one pydantic model per provider, on top of the settings every
integration shares (paging, timeouts, retry policy, conflict rule, dead letters, monitoring
thresholds, webhook verification).

The same models check an integration when it is registered (`integrations add`/`update`) and
whenever a run resolves it, so a configuration problem is a `ConfigError` naming the setting —
at registration, not at the first sync, and never retried. Settings arrive as the CLI's strings
or as stored JSON: numbers are coerced (lax mode), JSON-valued settings (`monitoring`,
`named_shadows`) are parsed, unknown keys are refused with a did-you-mean, and no message echoes
a value that looks like a secret.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from sync_pipelines import json_limits
from sync_pipelines.errors import ConfigError
from sync_pipelines.monitoring.thresholds import Thresholds
from sync_pipelines.observability.redaction import is_sensitive_key, redact_text
from sync_pipelines.outbound import check_literal_host

#: integration and organization ids: they become Dagster partition keys, log fields and URL
#: path segments, so letters, digits and `.`, `_`, `-`, starting with a letter or digit
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: what a secret reference must be: the name of an environment variable, never its value
ENV_VAR_PATTERN = re.compile(r"[A-Z_][A-Z0-9_]*")
#: where a provider that can list states reads them (see `Provider.list_states`)
STATE_SOURCES = ("device", "list")
#: `conflict_resolution` values (store.desired.RESOLUTIONS; a test keeps the two equal)
CONFLICT_RULES = ("provider_wins", "local_wins")
#: the secret reference naming the variable that holds the webhook secret (webhooks.verification)
WEBHOOK_SECRET_REF = "webhook_secret"
#: webhook verification schemes (webhooks.verification.SCHEMES; a test keeps the two equal)
WEBHOOK_SCHEMES = ("standard_webhooks", "shared_secret")
#: `shape_drift_policy` values (sync/shape_drift.py): what a change of the shape of what the
#: provider sends does besides its `shape_changed` row
SHAPE_DRIFT_POLICIES = ("ignore", "alert", "pause")


class Expect(str):
    """What a setting must be, in words: `Annotated[int, Field(ge=1), Expect("an integer ≥ 1")]`
    makes every refusal of it read `setting 'x': must be an integer ≥ 1 (got …)`."""


def _json_value(value: Any) -> Any:
    """A JSON-valued setting given as text (`--setting 'monitoring={...}'`) is parsed."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json_limits.decode(value)
        except ValueError:
            raise ValueError("is not valid JSON") from None
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        raise ValueError("not an http(s) URL") from None
    check_literal_host(value)  # a name is checked when called (outbound.DestinationGuard)
    return value


def _not_a_flag(value: Any) -> Any:
    # pydantic's lax mode reads true as 1: a number setting given a boolean is a mistake
    if isinstance(value, bool):
        raise ValueError("not a number")
    return value


def _as_text(value: Any) -> Any:
    # `--setting protocol=5` and stored JSON `5` both mean "5"
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _shadow_names(value: Any) -> Any:
    # "a,b" is a list of two names; "*" means every named shadow the thing has
    if isinstance(value, str) and value != "*":
        return [name.strip() for name in value.split(",") if name.strip()]
    return value


def _monitoring(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError("not a JSON object")
    unknown = [k for k in value if k not in Thresholds.__dataclass_fields__]
    if unknown:
        raise ValueError(
            f"unknown monitoring threshold {unknown[0]!r}{_suggestion(unknown[0], Thresholds.__dataclass_fields__)}"
        )
    Thresholds.from_settings({"monitoring": value})  # types and ranges, in their one place
    return dict(value)


_NUMBER = BeforeValidator(_not_a_flag)
PositiveInt = Annotated[int, Field(ge=1), _NUMBER, Expect("an integer ≥ 1")]
NonNegativeInt = Annotated[int, Field(ge=0), _NUMBER, Expect("an integer ≥ 0")]
PositiveFloat = Annotated[float, Field(gt=0), _NUMBER, Expect("a number > 0")]
NonNegativeFloat = Annotated[float, Field(ge=0), _NUMBER, Expect("a number ≥ 0")]
Text = Annotated[str, Field(min_length=1), Expect("a non-empty text")]
HttpUrl = Annotated[str, AfterValidator(_http_url), Expect("an http(s) URL")]
Port = Annotated[int, Field(ge=1, le=65535), _NUMBER, Expect("a port number 1–65535")]
StateSource = Annotated[Literal["device", "list"], Expect(f"one of {', '.join(STATE_SOURCES)}")]
#: the provider account's request limit (providers/pacing.py): every sync of the account is paced
#: to it; unset, the pace is found from the provider's 429s
RateLimit = Annotated[
    float,
    Field(gt=0, le=100_000),
    _NUMBER,
    Expect("requests per second, above 0 and at most 100000"),
]
Monitoring = Annotated[
    dict[str, Any],
    # before-validators run last to first: parse the JSON text, then check the object
    BeforeValidator(_monitoring),
    BeforeValidator(_json_value),
    Expect('a JSON object of monitoring thresholds, e.g. {"error_rate_warn": 0.02}'),
]


class IntegrationSettings(BaseModel):
    """The settings every integration may have. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: what the provider's model adds to every refusal ("for provider golioth")
    provider: ClassVar[str] = ""
    #: settings for which an empty value means something (off) rather than "not set"
    empty_is_a_value: ClassVar[frozenset[str]] = frozenset({"webhook_auth_query"})

    page_size: PositiveInt | None = None  # clamped to the provider's maximum
    state_concurrency: PositiveInt | None = None
    #: how long one provider call may take before it counts as a (transient) timeout
    request_timeout_s: PositiveFloat = 30.0
    conflict_resolution: Annotated[
        Literal["provider_wins", "local_wins"], Expect(f"one of {', '.join(CONFLICT_RULES)}")
    ] = "provider_wins"
    # the retry policy of every provider call (observability.retrying.RetryPolicy)
    retry_max_attempts: PositiveInt | None = None
    retry_max_total_s: PositiveFloat | None = None
    retry_base_backoff_s: NonNegativeFloat | None = None
    retry_max_backoff_s: NonNegativeFloat | None = None
    retry_jitter_s: NonNegativeFloat | None = None
    # dead letters (store.dead_letters.DeadLetterPolicy)
    dead_letter_max_attempts: PositiveInt | None = None
    dead_letter_backoff_s: PositiveFloat | None = None
    dead_letter_backoff_max_s: PositiveFloat | None = None
    #: the mass-deletion guard: a complete scan that would delete more than this fraction of the
    #: active inventory is held for `sync-pipelines devices confirm-deletions` (sync.deletions)
    max_delete_fraction: Annotated[
        float, Field(gt=0, le=1), _NUMBER, Expect("a number above 0 and at most 1")
    ] = 0.2
    #: a change of the shape of the devices' attributes or state (sync/shape_drift.py): `ignore`
    #: records it, `alert` also raises an alert, `pause` also disables the integration
    shape_drift_policy: Annotated[
        Literal["ignore", "alert", "pause"], Expect(f"one of {', '.join(SHAPE_DRIFT_POLICIES)}")
    ] = "alert"
    #: overrides of the monitoring thresholds (monitoring.thresholds.Thresholds)
    monitoring: Monitoring | None = None
    # webhook verification (webhooks.verification)
    webhook_auth: (
        Annotated[
            Literal["standard_webhooks", "shared_secret"],
            Expect(f"one of {', '.join(WEBHOOK_SCHEMES)}"),
        ]
        | None
    ) = None
    webhook_auth_header: (
        Annotated[
            str,
            Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"),
            Expect("an HTTP header name"),
        ]
        | None
    ) = None
    webhook_auth_query: str | None = None
    webhook_max_body_bytes: PositiveInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_means_unset(cls, data: Any) -> Any:
        # `--setting shadow_name=` (or a stored "") has always meant "not set"
        if isinstance(data, Mapping):
            return {
                k: v for k, v in data.items() if k in cls.empty_is_a_value or v not in (None, "")
            }
        return data

    @classmethod
    def parse(cls, settings: Mapping[str, Any], integration_id: str | None) -> Self:
        """The settings, checked and typed; a ConfigError names every problem (and its setting)."""
        try:
            return cls.model_validate(dict(settings))
        except ValidationError as exc:
            problems = list(dict.fromkeys(_problem(cls, error) for error in exc.errors()))
            raise ConfigError(integration_id, "; ".join(problems)) from None

    @classmethod
    def of(cls, config: Any) -> Self:
        """The typed settings of an `IntegrationConfig`."""
        return cls.parse(config.settings, config.integration_id)

    def stored(self) -> dict[str, Any]:
        """What the store keeps: the settings given, typed (`"50"` → 50, JSON parsed)."""
        return self.model_dump(mode="json", exclude_unset=True)


class GoliothSettings(IntegrationSettings):
    provider: ClassVar[str] = "golioth"

    base_url: HttpUrl
    project_id: Text
    #: the old name of `page_size`
    per_page: PositiveInt | None = None
    page_concurrency: PositiveInt = 4
    state_concurrency: PositiveInt = 8
    #: "list": states ride on the device list (`statePath=/`); "device": one read per device
    state_source: StateSource = "list"
    rate_limit_rps: RateLimit | None = None


class AwsIotSettings(IntegrationSettings):
    provider: ClassVar[str] = "aws_iot"
    empty_is_a_value = IntegrationSettings.empty_is_a_value | {"tags_attribute"}

    region: Annotated[str, Field(pattern=r"^[a-z0-9-]+$"), Expect("an AWS region like eu-west-1")]
    endpoint_url: HttpUrl | None = None
    data_endpoint_url: HttpUrl | None = None
    state_concurrency: PositiveInt = 8
    #: "list": shadows from the fleet index (SearchIndex) when the account's index holds them;
    #: "device": one GetThingShadow per thing
    state_source: StateSource = "list"
    #: the thing attribute holding the tags; empty: no tags
    tags_attribute: str | None = "tags"
    thing_type: Text | None = None
    attribute_name: Text | None = None
    attribute_value: Text | None = None
    shadow_name: Text | None = None
    named_shadows: (
        Annotated[
            Literal["*"] | list[Text],
            BeforeValidator(_shadow_names),
            BeforeValidator(_json_value),
            Expect('"*", a list of shadow names or "a,b"'),
        ]
        | None
    ) = None
    #: the rule destination a webhook confirmation must name (webhooks.app)
    aws_destination_arn: Text | None = None

    @model_validator(mode="after")
    def _one_shadow_setting(self) -> Self:
        if self.shadow_name and self.named_shadows:
            raise ValueError("set either shadow_name or named_shadows, not both")
        return self


class AzureIotSettings(IntegrationSettings):
    provider: ClassVar[str] = "azure_iot"

    #: default https://{HostName of the connection string}
    base_url: HttpUrl | None = None
    query: Text | None = None
    api_version: Text | None = None
    sas_ttl_s: PositiveInt | None = None
    #: "list": states come with the twin query's pages; "device": one twin read per device
    state_source: StateSource = "list"
    rate_limit_rps: RateLimit | None = None


Protocol = Annotated[Literal["3.1.1", "5"], BeforeValidator(_as_text), Expect("3.1.1 or 5")]


class MqttSettings(IntegrationSettings):
    provider: ClassVar[str] = "mqtt"

    host: Annotated[str, Field(pattern=r"^[A-Za-z0-9.:\[\]_-]+$"), Expect("a host name or address")]
    port: Port = 1883
    topic_prefix: Text | None = None
    client_id: Text | None = None
    protocol: Protocol = "3.1.1"
    read_protocol: Protocol = "5"
    drain_window_s: PositiveFloat = 30.0
    idle_timeout_s: PositiveFloat = 1.0
    batch_linger_s: NonNegativeFloat = 0.05
    #: 0 = unlimited
    broker_max_inflight: NonNegativeInt = 20
    max_message_bytes: PositiveInt = 256 * 1024
    session_expiry_s: NonNegativeInt = 86400
    #: read the broker's $SYS dropped-message counter around each drain (providers/mqtt_loss.py);
    #: off where an ACL denies $SYS, so refused reads do not count as failed calls
    broker_counters: bool = True


def check_id(kind: str, value: str | None, integration_id: str | None = None) -> str:
    """An organization or integration id, checked (ConfigError says what an id may be)."""
    if not value or not value.strip():
        raise ConfigError(integration_id, f"{kind} must not be empty")
    if not ID_PATTERN.fullmatch(value):
        raise ConfigError(
            integration_id,
            f"{kind} {_quoted(value)} is not a valid id: use 1–128 letters, digits, `.`, `_` "
            "or `-`, starting with a letter or digit",
        )
    return value


def check_secret_ref(secret: str, env_name: Any, integration_id: str | None) -> str:
    """A secret reference must be an environment variable's name. What was given instead is
    never shown: it is most likely the secret itself."""
    if not is_env_var_name(env_name):
        raise ConfigError(integration_id, secret_ref_refusal(secret))
    return env_name


def is_env_var_name(value: Any) -> bool:
    return isinstance(value, str) and ENV_VAR_PATTERN.fullmatch(value) is not None


def secret_ref_refusal(secret: str) -> str:
    example = "GOLIOTH_API_KEY" if secret == "api_key" else f"SYNC_{secret.upper()}"
    return (
        f"secret reference for {secret!r} must be an environment-variable name like {example}; "
        "the value given is not one (not shown)"
    )


def check_secret_refs(
    secret_refs: Mapping[str, Any], known: tuple[str, ...], integration_id: str | None
) -> None:
    """Every reference names a secret the provider reads and an environment variable."""
    for secret, env_name in secret_refs.items():
        if secret not in known:
            raise ConfigError(
                integration_id,
                f"unknown secret {secret!r}{_suggestion(secret, known)} "
                f"(known: {', '.join(known)})",
            )
        check_secret_ref(secret, env_name, integration_id)


def check_poll_interval(value: Any, integration_id: str | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            integration_id,
            f"poll interval must be a whole number of seconds ≥ 1 (got {value!r:.40})",
        )
    return value


def _suggestion(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _problem(model: type[IntegrationSettings], error: Any) -> str:
    """One pydantic error as a sentence naming the setting and the value's problem."""
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else ""
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"unknown setting {name!r}{_suggestion(name, model.model_fields)}"
    if kind == "missing":
        of = f" for provider {model.provider}" if model.provider else ""
        return f"missing required setting {name!r}{of}"
    if not name:  # a rule across settings (a model validator)
        return str(error.get("ctx", {}).get("error") or error.get("msg"))
    field = model.model_fields.get(name)
    expect = _expectation(field) if field is not None else None
    reason = str(error.get("ctx", {}).get("error") or "")
    if kind == "value_error" and reason and not reason.startswith(("not ", "is not ")):
        return f"setting {name!r}: {reason}"  # says what is wrong, and with which part
    why = f"must be {expect}" if expect else str(error.get("msg", "is invalid")).lower()
    return f"setting {name!r}: {why} ({_shown(name, error.get('input'))})"


def _expectation(field: Any) -> str | None:
    stack = [field.annotation, *field.metadata]
    while stack:
        item = stack.pop()
        if isinstance(item, Expect):
            return str(item)
        for meta in getattr(item, "__metadata__", ()):
            if isinstance(meta, Expect):
                return str(meta)
        stack.extend(getattr(item, "__args__", ()))
    return None


def _quoted(value: Any) -> str:
    text = repr(value)
    return (
        "(not shown)"
        if redact_text(text) != text
        else f"{text[:60]}{'…' if len(text) > 60 else ''}"
    )


def _shown(name: str, value: Any) -> str:
    """`got 'lots'`, or `value not shown` when the setting or the value looks secret."""
    text = repr(value)
    if is_sensitive_key(name) or redact_text(text) != text:
        return "value not shown"
    return f"got {text[:60]}{'…' if len(text) > 60 else ''}"
