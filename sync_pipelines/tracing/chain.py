"""The causal chain behind one id, within one organization, as data.

What links what (all written by the code that does the work, see observability/activity.py,
webhooks/app.py, sync/webhook_processing.py, sync/inventory.py):
- a webhook delivery is a `webhook_received` activity row whose request id is the inbox rows'
  `delivery_id` (the event id itself for a single-event delivery); the run that processed an
  event is its `run_id`, and a failed event is a `webhook_processing` row with the event id as
  request id and a dead letter (stream webhook_events, dedupe key = event id);
- a run is its `integration_sync_log` rows and its operation rows (activity rows without a
  request id: import, state_import, webhook_processing, export ...), under the run id;
- a provider call is one activity row per attempt (`http_request` / `mqtt_request`) sharing the
  call's `X-Request-ID`;
- a device row and its state row carry `last_run_id` / `last_request_id`: the run and the call
  (or, when a webhook wrote it, the event id) that last wrote them;
- an activity row about one device (a state read or desired push, each attempt; a rejected
  record; a failed webhook event; a replay) carries it as `external_id`;
- dead letters carry the run and request they failed in; check results their run; alert
  incidents their run, else their integration and time.

`build_chain` detects what an id is (a webhook event, a run, a request, a device — most
specific first), reads what is linked to it and returns a `TraceChain`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipelines.clock import utc_now
from sync_pipelines.observability.activity import ERROR_STATUSES, PROVIDER_CALLS
from sync_pipelines.store.device_changes import DeviceChange, device_changes_page
from sync_pipelines.store.integrations import Integration, get_integration
from sync_pipelines.store.provider_calls import CALL_TYPES_SQL, ERRORS_SQL, run_call_counts
from sync_pipelines.store.trace_rows import Row, row_exists, select_rows, select_rows_in

WEBHOOK_EVENT, RUN, REQUEST, DEVICE = "webhook_event", "run", "request", "device"
#: detection order: the most specific kind an id matches wins (a single-event webhook
#: delivery's request id *is* its event id, and the event's chain includes the delivery)
KINDS = (WEBHOOK_EVENT, RUN, REQUEST, DEVICE)
WEBHOOK_RECEIVED = "webhook_received"

#: most recent webhook events of a device, dead letters and device rows read per chain
EVENT_LIMIT = 20
DEAD_LETTER_LIMIT = 100
DEVICE_LIMIT = 100
#: a traced device's newest history rows (store/device_changes.py) shown as its timeline
HISTORY_LIMIT = 50
#: provider calls of a traced run read in full (its failed and retried calls first); a device's
#: newest activity rows read
CALL_LIMIT = 200
#: how long after a chain's last row an alert may still be about it (the alert sensor's lag)
ALERT_LAG = timedelta(minutes=30)

_CALL_TYPES = tuple(sorted(PROVIDER_CALLS))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TraceNotFound(LookupError):
    """Nothing in the organization carries the id."""


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One provider call: its attempts (activity rows under one request id), oldest first."""

    request_id: str
    attempts: tuple[Row, ...]

    @property
    def last(self) -> Row:
        return self.attempts[-1]

    @property
    def activity_type(self) -> str:
        return self.last["activity_type"]

    @property
    def method(self) -> str | None:
        return self.last.get("method")

    @property
    def endpoint(self) -> str | None:
        return self.last.get("endpoint")

    @property
    def run_id(self) -> str | None:
        return self.last.get("run_id")

    @property
    def status(self) -> str:
        return self.last["status"]

    @property
    def failed(self) -> bool:
        return self.status in ERROR_STATUSES

    @property
    def started_at(self) -> datetime | None:
        return self.attempts[0].get("created_at")


@dataclass(frozen=True, slots=True)
class WebhookLink:
    """A received event and its deliveries (a retried delivery is one row per try); `event` is
    None for a delivery that stored nothing (rejected: bad signature, malformed body ...)."""

    event: Row | None
    deliveries: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class RunLink:
    run_id: str
    #: one row per stream the run synced (devices, device_states, webhook_events ...)
    sync_logs: tuple[Row, ...]
    #: its operation rows, and the non-call rows linked to the chain (rejected records ...)
    operations: tuple[Row, ...]
    #: provider calls (attempt rows) the run made in all, and how many failed or were retried
    calls_total: int
    calls_failed: int

    @property
    def started_at(self) -> datetime | None:
        times = [r["started_at"] for r in self.sync_logs] + [
            r["created_at"] for r in self.operations
        ]
        return min(times, default=None)

    @property
    def integration_ids(self) -> list[str]:
        ids = {r["integration_id"] for r in (*self.sync_logs, *self.operations)}
        return sorted(i for i in ids if i)


@dataclass(frozen=True, slots=True)
class DeviceLink:
    """A device the chain wrote (or names), with its provenance as it stands now."""

    integration_id: str
    external_id: str
    device: Row | None
    state: Row | None
    #: a device trace: its history, newest first (created, updated old → new, deleted, ...)
    changes: tuple[DeviceChange, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertLink:
    incident: Row
    notifications: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class TraceChain:
    id: str
    kind: str
    organization_id: str
    #: the integration the operator narrowed the search to, if any
    integration_id: str | None
    #: other kinds the id also matched (it is traced as `kind`)
    also_matches: tuple[str, ...]
    generated_at: datetime
    integrations: tuple[Integration, ...]
    webhooks: tuple[WebhookLink, ...]
    runs: tuple[RunLink, ...]
    calls: tuple[ProviderCall, ...]
    devices: tuple[DeviceLink, ...]
    dead_letters: tuple[Row, ...]
    check_results: tuple[Row, ...]
    alerts: tuple[AlertLink, ...]
    #: what was left out by a limit: name → rows not read
    truncated: dict[str, int] = field(default_factory=dict)

    def calls_of(self, run_id: str | None) -> list[ProviderCall]:
        return [c for c in self.calls if c.run_id == run_id]

    @property
    def activity_rows(self) -> list[Row]:
        """Every activity row on the chain, oldest first."""
        rows: dict[str, Row] = {}
        for link in self.webhooks:
            rows.update((r["id"], r) for r in link.deliveries)
        for run in self.runs:
            rows.update((r["id"], r) for r in run.operations)
        for call in self.calls:
            rows.update((r["id"], r) for r in call.attempts)
        return sorted(rows.values(), key=lambda r: (r["created_at"], r["id"]))

    @property
    def sync_log_rows(self) -> list[Row]:
        return sorted(
            (r for run in self.runs for r in run.sync_logs),
            key=lambda r: (r["started_at"], r["id"]),
        )


def matching_kinds(
    conn: Connection, organization_id: str, ident: str, integration_id: str | None = None
) -> list[str]:
    """The kinds of thing `ident` is in the organization, most specific first."""

    def exists(table: str, condition: str) -> bool:
        return row_exists(conn, table, (organization_id, integration_id), condition, ident)

    found = {
        WEBHOOK_EVENT: exists("webhook_events", "id = :x OR event_id = :x"),
        RUN: exists("integration_activity_log", "run_id = :x")
        or exists("integration_sync_log", "run_id = :x")
        or exists("webhook_events", "run_id = :x")
        or exists("integration_check_results", "run_id = :x"),
        REQUEST: exists("integration_activity_log", "request_id = :x"),
        DEVICE: exists("devices", "external_id = :x")
        or exists("webhook_events", "external_id = :x")
        or exists("dead_letters", "external_id = :x"),
    }
    return [kind for kind in KINDS if found[kind]]


def build_chain(
    conn: Connection,
    organization_id: str,
    ident: str,
    *,
    kind: str | None = None,
    integration_id: str | None = None,
    call_limit: int = CALL_LIMIT,
) -> TraceChain:
    """The chain behind `ident` (auto-detected unless `kind` is given); TraceNotFound names
    what was looked for when nothing carries it."""
    if not ident or not ident.strip():
        raise ValueError("the id to trace is empty")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    matches = matching_kinds(conn, organization_id, ident, integration_id)
    where = f"organization {organization_id!r}" + (
        f", integration {integration_id!r}" if integration_id else ""
    )
    if kind is None:
        if not matches:
            raise TraceNotFound(
                f"no webhook event, run, request or device {ident!r} in {where} "
                "(ids are exact; check the organization)"
            )
        kind = matches[0]
    elif kind not in matches:
        also = f" (it is a {', '.join(matches)})" if matches else ""
        raise TraceNotFound(f"no {kind.replace('_', ' ')} {ident!r} in {where}{also}")
    links = _Links(conn, organization_id, integration_id)
    _SEEDERS[kind](links, ident, call_limit)
    return links.chain(ident, kind, tuple(k for k in matches if k != kind))


# -- reading the links ------------------------------------------------------------------------------


class _Links:
    """Ids collected from the seed, then the rows they lead to."""

    def __init__(self, conn: Connection, organization_id: str, integration_id: str | None) -> None:
        self.conn, self.org, self.scope_iid = conn, organization_id, integration_id
        self.run_ids: set[str] = set()
        self.request_ids: set[str] = set()
        self.events: dict[str, Row] = {}
        self.device_keys: set[tuple[str, str]] = set()
        self.devices: dict[tuple[str, str], Row] = {}
        self.states: dict[tuple[str, str], Row] = {}
        self.dead_letters: dict[str, Row] = {}
        self.activity: dict[str, Row] = {}
        self.integration_ids: set[str] = set()
        #: request ids whose device rows to look up (a request trace: the rows that call wrote)
        self.written_by: set[str] = set()
        self.truncated: dict[str, int] = {}

    # seed helpers ---------------------------------------------------------------------------

    def scoped(self, condition: str) -> str:
        return condition + (" AND integration_id = :i" if self.scope_iid else "")

    def params(self, **values: Any) -> dict[str, Any]:
        return {"i": self.scope_iid, **values}

    def limited(self, name: str, rows: list[Row], limit: int) -> list[Row]:
        if len(rows) > limit:
            self.truncated[name] = self.truncated.get(name, 0) + len(rows) - limit
        return rows[:limit]

    def add_event(self, event: Row) -> None:
        self.events[event["id"]] = event
        self.integration_ids.add(event["integration_id"])
        self.request_ids.update(r for r in (event["delivery_id"], event["event_id"]) if r)
        if event.get("run_id"):
            self.run_ids.add(event["run_id"])
        if event.get("external_id"):
            self.device_keys.add((event["integration_id"], event["external_id"]))

    def add_dead_letter(self, letter: Row) -> None:
        self.dead_letters[letter["id"]] = letter
        self.integration_ids.add(letter["integration_id"])
        for column, ids in (("run_id", self.run_ids), ("request_id", self.request_ids)):
            if letter.get(column):
                ids.add(letter[column])

    def add_written_row(self, table: str, row: Row) -> None:
        key = (row["integration_id"], row["external_id"])
        (self.devices if table == "devices" else self.states)[key] = row
        self.device_keys.add(key)
        self.integration_ids.add(row["integration_id"])
        if row.get("last_run_id"):
            self.run_ids.add(row["last_run_id"])
        if row.get("last_request_id"):
            self.request_ids.add(row["last_request_id"])

    # the chain ------------------------------------------------------------------------------

    def chain(self, ident: str, kind: str, also: tuple[str, ...]) -> TraceChain:
        calls, deliveries, linked = self._activity_by_request()
        runs = self._runs(linked)
        self._devices_written()
        devices = self._device_links()
        if kind == DEVICE:
            devices = [self._with_history(d) if d.external_id == ident else d for d in devices]
        webhooks = self._webhook_links(deliveries)
        checks = select_rows_in(
            self.conn,
            "integration_check_results",
            self.org,
            "run_id",
            self.run_ids,
            order_by="created_at, id",
        )
        integrations = []
        for iid in sorted(self.integration_ids | {i for r in runs for i in r.integration_ids}):
            integ = get_integration(self.conn, self.org, iid)
            if integ is not None:
                integrations.append(integ)
        alerts = self._alerts(runs, calls, webhooks, [i.integration_id for i in integrations])
        return TraceChain(
            id=ident,
            kind=kind,
            organization_id=self.org,
            integration_id=self.scope_iid,
            also_matches=also,
            generated_at=utc_now(),
            integrations=tuple(integrations),
            webhooks=tuple(webhooks),
            runs=tuple(runs),
            calls=tuple(calls),
            devices=tuple(devices),
            dead_letters=tuple(sorted(self.dead_letters.values(), key=lambda r: r["id"])),
            check_results=tuple(checks),
            alerts=tuple(alerts),
            truncated=self.truncated,
        )

    def _activity_by_request(self) -> tuple[list[ProviderCall], list[Row], list[Row]]:
        """Provider calls (grouped), webhook deliveries, and other rows linked by request id."""
        rows = select_rows_in(
            self.conn,
            "integration_activity_log",
            self.org,
            "request_id",
            self.request_ids,
            order_by="created_at, id",
        )
        for row in rows:
            self.activity[row["id"]] = row
        by_request: dict[str, list[Row]] = defaultdict(list)
        deliveries, linked = [], []
        for row in sorted(self.activity.values(), key=lambda r: (r["created_at"], r["id"])):
            if row["activity_type"] in _CALL_TYPES:
                by_request[row["request_id"]].append(row)
            elif row["activity_type"] == WEBHOOK_RECEIVED:
                deliveries.append(row)
            else:
                linked.append(row)
            if row.get("run_id"):
                self.run_ids.add(row["run_id"])
            if row.get("integration_id"):
                self.integration_ids.add(row["integration_id"])
        calls = [
            ProviderCall(
                rid, tuple(sorted(attempts, key=lambda r: (r["attempt"], r["created_at"])))
            )
            for rid, attempts in by_request.items()
        ]
        calls.sort(key=lambda c: (c.started_at, c.request_id))
        return calls, deliveries, linked

    def _runs(self, linked: list[Row]) -> list[RunLink]:
        if not self.run_ids:
            return []
        sync_logs = select_rows_in(
            self.conn,
            "integration_sync_log",
            self.org,
            "run_id",
            self.run_ids,
            order_by="started_at, id",
        )
        # operations are the rows without a request id (a partial index holds just those)
        operations = select_rows_in(
            self.conn,
            "integration_activity_log",
            self.org,
            "run_id",
            self.run_ids,
            where="request_id IS NULL",
            order_by="created_at, id",
        )
        totals = self._call_counts()
        runs = []
        for run_id in self.run_ids:
            ops = {r["id"]: r for r in operations if r["run_id"] == run_id}
            ops.update((r["id"], r) for r in linked if r.get("run_id") == run_id)
            calls, failed = totals.get(run_id, (0, 0))
            runs.append(
                RunLink(
                    run_id=run_id,
                    sync_logs=tuple(r for r in sync_logs if r["run_id"] == run_id),
                    operations=tuple(
                        sorted(ops.values(), key=lambda r: (r["created_at"], r["id"]))
                    ),
                    calls_total=calls,
                    calls_failed=failed,
                )
            )
        runs.sort(key=lambda r: (r.started_at is None, r.started_at or _EPOCH, r.run_id))
        return runs

    def _call_counts(self) -> dict[str, tuple[int, int]]:
        return run_call_counts(self.conn, self.org, self.run_ids)

    def _devices_written(self) -> None:
        """A request trace: the device and state rows that call (or event) last wrote."""
        if not self.written_by or not self.integration_ids:
            return
        for table in ("devices", "device_states"):
            rows = select_rows(
                self.conn,
                table,
                self.org,
                "integration_id IN :iids AND last_request_id IN :rids",
                {"iids": sorted(self.integration_ids), "rids": sorted(self.written_by)},
                order_by="integration_id, external_id",
                limit=DEVICE_LIMIT + 1,
            )
            for row in self.limited(f"{table}_written", rows, DEVICE_LIMIT):
                key = (row["integration_id"], row["external_id"])
                (self.devices if table == "devices" else self.states)[key] = row
                self.device_keys.add(key)

    def _device_links(self) -> list[DeviceLink]:
        keys = sorted(self.device_keys)[:DEVICE_LIMIT]
        for iid, external_id in keys:
            for table, found in (("devices", self.devices), ("device_states", self.states)):
                if (iid, external_id) in found:
                    continue
                for row in select_rows(
                    self.conn,
                    table,
                    self.org,
                    "integration_id = :i AND external_id = :e",
                    {"i": iid, "e": external_id},
                ):
                    found[(iid, external_id)] = row
        return [
            DeviceLink(iid, ext, self.devices.get((iid, ext)), self.states.get((iid, ext)))
            for iid, ext in keys
        ]

    def _with_history(self, link: DeviceLink) -> DeviceLink:
        changes = device_changes_page(
            self.conn, self.org, link.integration_id, link.external_id, limit=HISTORY_LIMIT + 1
        )
        if len(changes) > HISTORY_LIMIT:
            self.truncated["device_history"] = self.truncated.get("device_history", 0) + 1
        return replace(link, changes=tuple(changes[:HISTORY_LIMIT]))

    def _webhook_links(self, deliveries: list[Row]) -> list[WebhookLink]:
        by_request: dict[str, list[Row]] = defaultdict(list)
        for row in deliveries:
            by_request[row["request_id"]].append(row)
        links, attached = [], set()
        for event in sorted(self.events.values(), key=lambda e: (e["received_at"], e["id"])):
            rows = by_request.get(event["delivery_id"], [])
            attached.add(event["delivery_id"])
            links.append(WebhookLink(event, tuple(rows)))
        for request_id, rows in by_request.items():
            if request_id not in attached:  # a delivery that stored no event
                links.append(WebhookLink(None, tuple(rows)))
        return links

    def _alerts(
        self,
        runs: list[RunLink],
        calls: list[ProviderCall],
        webhooks: list[WebhookLink],
        integration_ids: list[str],
    ) -> list[AlertLink]:
        incidents = {
            r["id"]: r
            for r in select_rows_in(
                self.conn,
                "alert_incidents",
                self.org,
                "run_id",
                self.run_ids,
                order_by="first_seen_at, id",
            )
        }
        span = _time_span(runs, calls, webhooks)
        if span and integration_ids:
            start, end = span
            for row in select_rows(
                self.conn,
                "alert_incidents",
                self.org,
                "integration_id IN :iids AND first_seen_at <= :end "
                "AND (resolved_at IS NULL OR resolved_at >= :start)",
                {"iids": integration_ids, "start": start, "end": end + ALERT_LAG},
                order_by="first_seen_at, id",
                limit=DEAD_LETTER_LIMIT,
            ):
                incidents[row["id"]] = row
        notifications = select_rows_in(
            self.conn,
            "alert_notifications",
            self.org,
            "incident_id",
            incidents,
            order_by="created_at, id",
        )
        return [
            AlertLink(i, tuple(n for n in notifications if n["incident_id"] == i["id"]))
            for i in sorted(incidents.values(), key=lambda r: (r["first_seen_at"], r["id"]))
        ]


def _time_span(
    runs: Iterable[RunLink], calls: Iterable[ProviderCall], webhooks: Iterable[WebhookLink]
) -> tuple[datetime, datetime] | None:
    times: list[datetime] = []
    for run in runs:
        for row in run.sync_logs:
            times += [t for t in (row["started_at"], row.get("completed_at")) if t]
        times += [t for r in run.operations for t in (r["created_at"], r.get("completed_at")) if t]
    times += [r["created_at"] for c in calls for r in c.attempts]
    for link in webhooks:
        times += [r["created_at"] for r in link.deliveries]
        if link.event:
            times += [t for t in (link.event["received_at"], link.event.get("processed_at")) if t]
    return (min(times), max(times)) if times else None


# -- seeds: what each kind of id leads to first --------------------------------------------------


def _seed_device(links: _Links, external_id: str, call_limit: int) -> None:
    where, params = links.scoped("external_id = :x"), links.params(x=external_id)
    for table in ("devices", "device_states"):
        for row in select_rows(links.conn, table, links.org, where, params, limit=DEVICE_LIMIT):
            links.add_written_row(table, row)
    # the device's own rows, newest first: its calls (each then read with every attempt by its
    # request id), rejected records, failed events, replays
    rows = select_rows(
        links.conn,
        "integration_activity_log",
        links.org,
        where,
        params,
        order_by="created_at DESC, id DESC",
        limit=call_limit + 1,
    )
    for row in links.limited("device_activity", rows, call_limit):
        links.activity[row["id"]] = row
        if row.get("integration_id"):
            links.integration_ids.add(row["integration_id"])
        if row.get("request_id"):
            links.request_ids.add(row["request_id"])
        elif row.get("run_id"):
            links.run_ids.add(row["run_id"])
    _add_events_and_letters(links, where, params, newest_first=True)


def _seed_request(links: _Links, request_id: str, _call_limit: int) -> None:
    links.request_ids.add(request_id)
    links.written_by.add(request_id)
    params = links.params(x=request_id)
    for row in select_rows(
        links.conn, "integration_activity_log", links.org, links.scoped("request_id = :x"), params
    ):
        links.activity[row["id"]] = row
        links.integration_ids.add(row["integration_id"])
    events = select_rows(
        links.conn,
        "webhook_events",
        links.org,
        links.scoped("(delivery_id = :x OR event_id = :x)"),
        params,
        order_by="received_at, id",
        limit=EVENT_LIMIT + 1,
    )
    for event in links.limited("webhook_events", events, EVENT_LIMIT):
        links.add_event(event)
        links.written_by.add(event["event_id"])  # webhook-written rows carry the event id
    for letter in select_rows(
        links.conn,
        "dead_letters",
        links.org,
        links.scoped("request_id = :x"),
        params,
        order_by="id",
        limit=DEAD_LETTER_LIMIT,
    ):
        links.add_dead_letter(letter)


def _seed_webhook_event(links: _Links, ident: str, _call_limit: int) -> None:
    for event in select_rows(
        links.conn,
        "webhook_events",
        links.org,
        links.scoped("(id = :x OR event_id = :x)"),
        links.params(x=ident),
        order_by="received_at, id",
        limit=EVENT_LIMIT,
    ):
        links.add_event(event)
        # a failed event's letter: stream webhook_events, keyed by the provider's event id
        for letter in select_rows(
            links.conn,
            "dead_letters",
            links.org,
            "integration_id = :i AND stream = 'webhook_events' AND dedupe_key = :k",
            {"i": event["integration_id"], "k": event["event_id"]},
        ):
            links.add_dead_letter(letter)


def _seed_run(links: _Links, run_id: str, call_limit: int) -> None:
    links.run_ids.add(run_id)
    where, params = links.scoped("run_id = :x"), links.params(x=run_id)
    # the run's failed and retried calls first, then its earliest rows with a request id (calls,
    # rejected records ...), up to the limit; every attempt of a call read is then read by its
    # request id
    failed = select_rows(
        links.conn,
        "integration_activity_log",
        links.org,
        f"{where} AND activity_type IN ({CALL_TYPES_SQL}) AND status IN ({ERRORS_SQL})",
        params,
        order_by="created_at, id",
        limit=call_limit,
    )
    first = select_rows(
        links.conn,
        "integration_activity_log",
        links.org,
        f"{where} AND request_id IS NOT NULL",
        params,
        order_by="created_at, id",
        limit=call_limit,
    )
    for row in (failed + first)[: max(call_limit, len(failed))]:
        links.activity[row["id"]] = row
        links.request_ids.add(row["request_id"])
    _add_events_and_letters(links, where, params, newest_first=False)


def _add_events_and_letters(
    links: _Links, where: str, params: dict[str, Any], *, newest_first: bool
) -> None:
    """The webhook events and dead letters matching `where`, each up to its limit (a device's
    newest first; a run's in order)."""
    desc = " DESC" if newest_first else ""
    events = select_rows(
        links.conn,
        "webhook_events",
        links.org,
        where,
        params,
        order_by=f"received_at{desc}, id{desc}",
        limit=EVENT_LIMIT + 1,
    )
    for event in links.limited("webhook_events", events, EVENT_LIMIT):
        links.add_event(event)
    letters = select_rows(
        links.conn,
        "dead_letters",
        links.org,
        where,
        params,
        order_by=f"id{desc}",
        limit=DEAD_LETTER_LIMIT + 1,
    )
    for letter in links.limited("dead_letters", letters, DEAD_LETTER_LIMIT):
        links.add_dead_letter(letter)


_SEEDERS = {
    DEVICE: _seed_device,
    REQUEST: _seed_request,
    WEBHOOK_EVENT: _seed_webhook_event,
    RUN: _seed_run,
}
