"""The console's routes, mounted under `/console` by its own server (console/server.py).

Pages (server-rendered, Jinja2) and the JSON API they use share one set of reads:
- `activity` / `api/activity`: the activity log, newest first, keyset pages, filters in the URL;
- `overview` / `api/overview`: one row per integration, from the integration-health report;
- `incidents` / `api/incidents` (and `/{id}`): alert incidents, open and resolved, with their
  notifications, newest first, keyset pages;
- `integrations/{id}` / `api/integrations/{id}`: one integration — settings (secret references
  by variable name), enabled, poll interval, next scheduled sync, health with its reasons — and
  its 90-day timeline of syncs, alerts and configuration changes, newest first, keyset pages;
  and its devices (`api/integrations/{id}/devices`): searched by id or name, filtered to
  active / deleted / failing, keyset pages in id order;
- `integrations/{id}/dead-letters/{letter_id}` / `api/integrations/{id}/dead-letters[/{letter_id}]`:
  the integration's dead letters (its page lists them, filtered by status, keyset pages) and one
  letter whole, payload redacted (dead_letter_page.py); an operator with a write credential
  POSTs `.../dead-letters/{letter_id}/replay`, `.../quarantine` and `.../dead-letters/replay-due`
  (CSRF-checked, csrf.py; the CLI's code, sync/operator_actions.py; written as the service's
  role in the letter's organization, access.py `writing`);
- `trace` / `api/trace`: the causal chain of an id (tracing/chain.py), with Dagster run links;
- `export/activity.{json,csv}`, `export/trace.{json,csv}`, `export/incidents.csv`,
  `export/integrations/{id}/timeline.csv`: the same
  data as a download.

Every route but the two static files needs an operator (auth.py); an operator scoped to one
organization reads through a row-level-security transaction (access.py). Only the dead-letter
actions write, and only for an operator holding a write credential.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from sync_pipelines.clock import utc_now
from sync_pipelines.console.access import WriteRoleUnavailable, reading, writing
from sync_pipelines.console.auth import REALM, ConsoleAuth, Operator
from sync_pipelines.console.csrf import FIELD as CSRF_FIELD
from sync_pipelines.console.csrf import (
    FORM_PAGE_REFERRER_POLICY,
    CsrfRefused,
    check_request,
    issue_token,
)
from sync_pipelines.console.dead_letter_page import (
    AFTER_PARAM,
    LIMIT_PARAM,
    DeadLetterFilter,
    DeadLetterNotFound,
    find_visible_letter,
    integration_dead_letters,
    letter_cursor,
    letter_detail,
    letter_json,
)
from sync_pipelines.console.dead_letter_page import page_size as letters_page_size
from sync_pipelines.console.device_list import DeviceQuery, device_list
from sync_pipelines.console.export import (
    MAX_EXPORT_ROWS,
    activity_bundle,
    rows_csv,
    trace_csv,
)
from sync_pipelines.console.filters import (
    DIRECTIONS,
    PROVIDERS,
    RANGES,
    STATUSES,
    ActivityFilter,
    Cursor,
    FilterError,
    ScopeError,
)
from sync_pipelines.console.incidents import (
    INCIDENT_CSV_COLUMNS,
    INCIDENT_STATUSES,
    IncidentFilter,
    IncidentNotFound,
    csv_row,
    incident_detail,
    incident_page,
    iter_incidents,
)
from sync_pipelines.console.integration_page import (
    TIMELINE_CSV_COLUMNS,
    IntegrationNotFound,
    TimelineCursor,
    entry_json,
    find_visible_integration,
    integration_summary,
    integration_timeline,
    iter_timeline,
)
from sync_pipelines.console.integration_page import csv_row as timeline_csv_row
from sync_pipelines.console.overview import integration_overview, overview_json
from sync_pipelines.console.queries import (
    DEFAULT_PAGE_SIZE,
    EXPORT_COLUMNS,
    LIST_COLUMNS,
    MAX_PAGE_SIZE,
    activity_page,
    iter_activity,
)
from sync_pipelines.console.trace import dagster_run_url
from sync_pipelines.errors import SyncError
from sync_pipelines.observability.activity import (
    DESIRED_PUSH,
    EXPORT,
    HTTP_REQUEST,
    IMPORT,
    MQTT_MESSAGE,
    MQTT_REQUEST,
    RECORD_REJECTED,
    REPLAY,
    RETENTION,
    STATE_IMPORT,
    TEST_CONNECTION,
    WEBHOOK_PROCESSING,
)
from sync_pipelines.observability.logging import get_logger
from sync_pipelines.observability.redaction import redact, redact_text
from sync_pipelines.store.console_queries import TenantRoleUnavailable, organizations_of
from sync_pipelines.store.database import Store
from sync_pipelines.store.dead_letters import NOT_RESOLVED, DeadLetterSelection
from sync_pipelines.store.dead_letters import STATUSES as LETTER_STATUSES
from sync_pipelines.sync.operator_actions import (
    Actor,
    due_letters,
    quarantine_letters,
    replay_letters,
)
from sync_pipelines.tracing.bundle import jsonable, support_bundle
from sync_pipelines.tracing.chain import TraceChain, TraceNotFound, build_chain
from sync_pipelines.tracing.render import render_chain

_HERE = Path(__file__).parent
_log = get_logger("console")
#: offered in the activity-type box (any other type can be typed)
KNOWN_ACTIVITY_TYPES = (
    HTTP_REQUEST,
    MQTT_REQUEST,
    IMPORT,
    STATE_IMPORT,
    EXPORT,
    DESIRED_PUSH,
    TEST_CONNECTION,
    "webhook_received",
    WEBHOOK_PROCESSING,
    MQTT_MESSAGE,
    RECORD_REJECTED,
    REPLAY,
    RETENTION,
)
_SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


class _Unauthenticated(Exception):
    pass


class _Disabled(Exception):
    pass


class _ReadOnly(PermissionError):
    """A read-only operator asked for an action (403)."""


class _ActionFailed(RuntimeError):
    """An action could not run (another replay holds the integration's lease...): 409."""


#: the largest action form read (a CSRF token; nothing else is posted)
_MAX_FORM_BYTES = 4096
#: what the letter page says after an action (`?done=`)
_ACTIONS_DONE = ("replay", "quarantine", "nothing")


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["time"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if v else ""
    env.filters["ms"] = lambda v: "" if v is None else f"{v:,.1f} ms"
    env.filters["pct"] = lambda v: "" if v is None else f"{v:.1%}"
    return Jinja2Templates(env=env)


class Console:
    def __init__(
        self,
        store: Store,
        auth: ConsoleAuth,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.auth = auth
        self.environ = environ
        self.clock = clock
        self.templates = _templates()
        #: the store the dead-letter actions write through (access.py `writing`), made on the
        #: first action
        self._writer: Store | None = None
        self._writer_lock = threading.Lock()

    def close(self) -> None:
        """Release the actions' store, if one was made (the reading store is the caller's)."""
        with self._writer_lock:
            if self._writer is not None and self._writer is not self.store:
                self._writer.dispose()
            self._writer = None

    # -- access ------------------------------------------------------------------------------

    def operator(self, request: Request) -> Operator:
        if not self.auth.enabled:
            raise _Disabled()
        operator = self.auth.authenticate(request.headers.get("authorization"))
        if operator is None:
            raise _Unauthenticated()
        return operator

    def read(self, operator: Operator, work: Callable[[Any], Any]) -> Awaitable[Any]:
        def run() -> Any:
            with reading(self.store, operator) as conn:
                return work(conn)

        return run_in_threadpool(run)

    def _filter(self, request: Request, operator: Operator) -> ActivityFilter:
        return ActivityFilter.from_params(request.query_params).scoped_to(operator.organization_id)

    # -- activity ----------------------------------------------------------------------------

    async def _activity(self, request: Request) -> tuple[Operator, ActivityFilter, Any]:
        operator = self.operator(request)
        flt = self._filter(request, operator)
        after = Cursor.decode(request.query_params.get("after"))
        limit = _page_size(request.query_params.get("limit"))
        now = self.clock()
        page = await self.read(
            operator, lambda conn: activity_page(conn, flt, now=now, after=after, limit=limit)
        )
        return operator, flt, page

    async def activity_api(self, request: Request) -> Response:
        _, flt, page = await self._activity(request)
        return _json(
            {
                "filter": flt.to_params(),
                "rows": jsonable(page.rows),
                "next_cursor": page.next_cursor.encode() if page.next_cursor else None,
            }
        )

    async def activity_html(self, request: Request) -> Response:
        operator, flt, page = await self._activity(request)
        params = flt.to_params()
        if "limit" in request.query_params:  # the page size travels with the link, like the filter
            params["limit"] = request.query_params["limit"]
        next_link = (
            "activity?" + urlencode({**params, "after": page.next_cursor.encode()})
            if page.next_cursor
            else None
        )
        return self._page(
            request,
            "activity.html",
            operator,
            filter=flt,
            rows=page.rows,
            query=urlencode(params),
            next_link=next_link,
            next_cursor=page.next_cursor.encode() if page.next_cursor else "",
            providers=PROVIDERS,
            statuses=STATUSES,
            directions=DIRECTIONS,
            ranges=tuple(RANGES),
            activity_types=KNOWN_ACTIVITY_TYPES,
        )

    async def export_activity(self, request: Request) -> Response:
        operator = self.operator(request)
        flt = self._filter(request, operator)
        fmt = _export_format(request)
        now = self.clock()
        # the CSV keeps to flat columns; the JSON bundle carries headers, metadata and stacks too
        columns = EXPORT_COLUMNS if fmt == "json" else LIST_COLUMNS
        rows = await self.read(
            operator,
            lambda conn: list(
                iter_activity(conn, flt, now=now, max_rows=MAX_EXPORT_ROWS, columns=columns)
            ),
        )
        _log.info("console_export", operator=operator.name, kind="activity", rows=len(rows))
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        if fmt == "csv":
            return _download(rows_csv(rows, columns), f"activity-{stamp}.csv", "text/csv")
        bundle = activity_bundle(flt, rows, generated_at=now, operator=operator.name)
        return _download(_dumps(bundle), f"activity-{stamp}.json", "application/json")

    # -- overview ----------------------------------------------------------------------------

    def _overview_org(self, request: Request, operator: Operator) -> str | None:
        asked = (request.query_params.get("organization") or "").strip() or None
        return ActivityFilter(organization=asked).scoped_to(operator.organization_id).organization

    async def overview_api(self, request: Request) -> Response:
        operator = self.operator(request)
        org, now = self._overview_org(request, operator), self.clock()
        report = await self.read(operator, lambda c: integration_overview(c, org, now=now))
        return _json(overview_json(report))

    async def overview_html(self, request: Request) -> Response:
        operator = self.operator(request)
        org, now = self._overview_org(request, operator), self.clock()
        report = await self.read(operator, lambda c: integration_overview(c, org, now=now))
        return self._page(
            request, "overview.html", operator, overview=overview_json(report), organization=org
        )

    # -- incidents ---------------------------------------------------------------------------

    async def _incidents(self, request: Request) -> tuple[Operator, IncidentFilter, Any]:
        operator = self.operator(request)
        flt = IncidentFilter.from_params(request.query_params).scoped_to(operator.organization_id)
        after = Cursor.decode(request.query_params.get("after"))
        limit = _page_size(request.query_params.get("limit"))
        page = await self.read(
            operator, lambda conn: incident_page(conn, flt, after=after, limit=limit)
        )
        return operator, flt, page

    async def incidents_api(self, request: Request) -> Response:
        _, flt, page = await self._incidents(request)
        return _json(
            {
                "filter": flt.to_params(),
                "incidents": [view.as_json() for view in page.incidents],
                "next_cursor": page.next_cursor.encode() if page.next_cursor else None,
            }
        )

    async def incidents_html(self, request: Request) -> Response:
        operator, flt, page = await self._incidents(request)
        params = flt.to_params()
        if "limit" in request.query_params:
            params["limit"] = request.query_params["limit"]
        next_link = (
            "incidents?" + urlencode({**params, "after": page.next_cursor.encode()})
            if page.next_cursor
            else None
        )
        return self._page(
            request,
            "incidents.html",
            operator,
            filter=flt,
            incidents=[view.as_json() for view in page.incidents],
            query=urlencode(flt.to_params()),
            next_link=next_link,
            statuses=INCIDENT_STATUSES,
        )

    async def export_incidents(self, request: Request) -> Response:
        operator = self.operator(request)
        flt = IncidentFilter.from_params(request.query_params).scoped_to(operator.organization_id)
        if request.path_params["format"] != "csv":
            raise FilterError(f"the incidents export is .csv; got .{request.path_params['format']}")
        rows = await self.read(
            operator,
            lambda conn: [
                csv_row(view)
                for view in iter_incidents(
                    conn, flt, max_rows=MAX_EXPORT_ROWS, page_size=MAX_PAGE_SIZE
                )
            ],
        )
        _log.info("console_export", operator=operator.name, kind="incidents", rows=len(rows))
        stamp = self.clock().strftime("%Y%m%dT%H%M%SZ")
        return _download(rows_csv(rows, INCIDENT_CSV_COLUMNS), f"incidents-{stamp}.csv", "text/csv")

    async def _incident(self, request: Request) -> tuple[Operator, dict[str, Any]]:
        operator = self.operator(request)
        ident = request.path_params["incident_id"]
        view = await self.read(
            operator, lambda conn: incident_detail(conn, ident, operator.organization_id)
        )
        return operator, view.as_json()

    async def incident_api(self, request: Request) -> Response:
        _, incident = await self._incident(request)
        return _json(incident)

    async def incident_html(self, request: Request) -> Response:
        operator, incident = await self._incident(request)
        return self._page(request, "incident.html", operator, incident=incident)

    # -- one integration ---------------------------------------------------------------------

    async def _integration(self, request: Request) -> tuple[Operator, dict[str, Any]]:
        operator = self.operator(request)
        ident = request.path_params["integration_id"]
        after = TimelineCursor.decode(request.query_params.get("after"))
        limit = _page_size(request.query_params.get("limit"))
        devices = DeviceQuery.from_params(request.query_params)
        now = self.clock()

        def work(conn: Any) -> dict[str, Any]:
            integration = find_visible_integration(conn, ident, operator.organization_id)
            page = integration_timeline(conn, integration, now=now, after=after, limit=limit)
            return {
                **integration_summary(conn, integration, now=now),
                "timeline": [entry_json(e, self.environ) for e in page.entries],
                "next_cursor": page.next_cursor.encode() if page.next_cursor else None,
                "devices": device_list(conn, integration, devices),
            }

        return operator, await self.read(operator, work)

    async def integration_devices_api(self, request: Request) -> Response:
        operator = self.operator(request)
        ident = request.path_params["integration_id"]
        devices = DeviceQuery.from_params(request.query_params)

        def work(conn: Any) -> dict[str, Any]:
            integration = find_visible_integration(conn, ident, operator.organization_id)
            return device_list(conn, integration, devices)

        return _json(await self.read(operator, work))

    async def integration_api(self, request: Request) -> Response:
        _, view = await self._integration(request)
        return _json(view)

    async def integration_html(self, request: Request) -> Response:
        operator, view = await self._integration(request)
        # each list pages on by its own cursor and keeps the other's place and the search
        params = dict(request.query_params)
        next_link = _with(params, after=view["next_cursor"]) if view["next_cursor"] else None
        devices_cursor = view["devices"]["next_cursor"]
        devices_next = _with(params, devices_after=devices_cursor) if devices_cursor else None
        letters = await self._dead_letters(request, operator)
        response = self._page(
            request,
            "integration.html",
            operator,
            view=view,
            next_link=next_link,
            devices_next=devices_next,
            devices_link=lambda **changes: _with(params, devices_after=None, **changes),
            dead_letters=_letters_section(request, letters),
            csrf_token=issue_token(operator),
        )
        response.headers["referrer-policy"] = FORM_PAGE_REFERRER_POLICY  # its forms need Origin
        return response

    async def export_timeline(self, request: Request) -> Response:
        operator = self.operator(request)
        ident = request.path_params["integration_id"]
        if request.path_params["format"] != "csv":
            raise FilterError(f"the timeline export is .csv; got .{request.path_params['format']}")
        now = self.clock()

        def work(conn: Any) -> list[dict[str, Any]]:
            integration = find_visible_integration(conn, ident, operator.organization_id)
            return [
                timeline_csv_row(entry_json(e, self.environ))
                for e in iter_timeline(
                    conn, integration, now=now, max_rows=MAX_EXPORT_ROWS, page_size=MAX_PAGE_SIZE
                )
            ]

        rows = await self.read(operator, work)
        _log.info("console_export", operator=operator.name, kind="timeline", rows=len(rows))
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        name = f"timeline-{_safe(ident)}-{stamp}.csv"
        return _download(rows_csv(rows, TIMELINE_CSV_COLUMNS), name, "text/csv")

    # -- dead letters (dead_letter_page.py; the actions: sync/operator_actions.py) ------------

    async def _dead_letters(self, request: Request, operator: Operator) -> dict[str, Any]:
        ident = request.path_params["integration_id"]
        flt = DeadLetterFilter.from_params(request.query_params)
        after = letter_cursor(request.query_params.get(AFTER_PARAM))
        limit = letters_page_size(request.query_params.get(LIMIT_PARAM), MAX_PAGE_SIZE)
        now = self.clock()

        def work(conn: Any) -> dict[str, Any]:
            integration = find_visible_integration(conn, ident, operator.organization_id)
            page = integration_dead_letters(conn, integration, flt, after=after, limit=limit)
            return {
                "organization_id": integration.organization_id,
                "integration_id": integration.integration_id,
                "statuses": list(flt.statuses),
                "filter": flt.to_params(),
                "dead_letters": [letter_json(letter, now=now) for letter in page.letters],
                "next_cursor": page.next_cursor,
            }

        return await self.read(operator, work)

    async def dead_letters_api(self, request: Request) -> Response:
        operator = self.operator(request)
        return _json(await self._dead_letters(request, operator))

    async def _dead_letter(self, request: Request) -> tuple[Operator, dict[str, Any]]:
        operator = self.operator(request)
        ident, letter_id = request.path_params["integration_id"], request.path_params["letter_id"]
        now = self.clock()

        def work(conn: Any) -> dict[str, Any]:
            letter = find_visible_letter(conn, ident, letter_id, operator.organization_id)
            return letter_detail(conn, letter, now=now)

        return operator, await self.read(operator, work)

    async def dead_letter_api(self, request: Request) -> Response:
        operator, letter = await self._dead_letter(request)
        return _json({**letter, "csrf_token": issue_token(operator) or None})

    async def dead_letter_html(self, request: Request) -> Response:
        operator, letter = await self._dead_letter(request)
        done = request.query_params.get("done")
        notice = _action_notice(done, letter) if done in _ACTIONS_DONE else None
        response = self._page(
            request,
            "dead_letter.html",
            operator,
            letter=letter,
            payload_text=json.dumps(letter["payload"], indent=2, default=str),
            notice=notice,
            notice_failed=done == "replay" and letter["status"] != "resolved",
            csrf_token=issue_token(operator),
        )
        response.headers["referrer-policy"] = FORM_PAGE_REFERRER_POLICY
        return response

    async def _action(self, request: Request) -> Operator:
        """The operator of an action, refused unless it holds a write credential and the
        request comes from this console's page (csrf.py)."""
        operator = self.operator(request)
        if not operator.can_write:
            raise _ReadOnly(
                f"{operator.name} holds a read-only credential: replay and quarantine need a "
                "write credential (SYNC_CONSOLE_WRITE_TOKEN or SYNC_CONSOLE_TENANT_WRITE_TOKENS)"
            )
        too_big = FilterError(f"an action's form is at most {_MAX_FORM_BYTES} bytes")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > _MAX_FORM_BYTES:
            raise too_big
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_FORM_BYTES:
                raise too_big
        form = parse_qs(body.decode("utf-8", "replace"))
        check_request(operator, request.headers, (form.get(CSRF_FIELD) or [None])[0])
        return operator

    async def _act(self, organization_id: str, work: Callable[..., Any]) -> Any:
        """Run an action's writes in the letter's organization, as the console may write."""

        def run() -> Any:
            with self._writer_lock:
                if self._writer is None:  # checked until it works: a GRANT needs no restart
                    self._writer = writing(self.store)
            try:
                return work(self._writer.scoped(organization_id))
            except SyncError as exc:
                raise _ActionFailed(f"the action could not run: {exc}") from exc

        return await run_in_threadpool(run)

    async def replay_letter(self, request: Request) -> Response:
        operator = await self._action(request)
        ident, letter_id = request.path_params["integration_id"], request.path_params["letter_id"]
        letter = await self.read(
            operator,
            lambda conn: find_visible_letter(conn, ident, letter_id, operator.organization_id),
        )
        done = "nothing"
        if letter.status in NOT_RESOLVED:
            actor = Actor.new("console", operator.name)
            outcomes = await self._act(
                letter.organization_id,
                lambda store: replay_letters(store, letter.organization_id, [letter], actor),
            )
            done = "replay"
            _log.info(
                "console_dead_letter_replayed",
                operator=operator.name,
                dead_letter_id=letter.id,
                outcome=[x.status for o in outcomes for x in o.letters],
                run_id=actor.run_id,
            )
        return _see_letter(request, ident, letter.id, done)

    async def quarantine_letter(self, request: Request) -> Response:
        operator = await self._action(request)
        ident, letter_id = request.path_params["integration_id"], request.path_params["letter_id"]
        letter = await self.read(
            operator,
            lambda conn: find_visible_letter(conn, ident, letter_id, operator.organization_id),
        )
        actor = Actor.new("console", operator.name)
        moved = await self._act(
            letter.organization_id,
            lambda store: quarantine_letters(
                store,
                letter.organization_id,
                DeadLetterSelection(integration_id=ident, ids=(letter.id,)),
                actor,
            ),
        )
        _log.info(
            "console_dead_letter_quarantined",
            operator=operator.name,
            dead_letter_id=letter.id,
            moved=len(moved),
        )
        return _see_letter(request, ident, letter.id, "quarantine" if moved else "nothing")

    async def replay_due(self, request: Request) -> Response:
        operator = await self._action(request)
        ident = request.path_params["integration_id"]
        integration = await self.read(
            operator, lambda conn: find_visible_integration(conn, ident, operator.organization_id)
        )
        org = integration.organization_id
        actor = Actor.new("console", operator.name)

        def work(store: Store) -> list[Any]:
            with store.connect() as conn:
                due = due_letters(conn, org, ident)
            return [x for o in replay_letters(store, org, due, actor) for x in o.letters]

        letters = await self._act(org, work)
        tally = {s: sum(1 for x in letters if x.status == s) for s in LETTER_STATUSES}
        _log.info(
            "console_dead_letters_replayed", operator=operator.name, run_id=actor.run_id, **tally
        )
        query = urlencode({"replayed": len(letters), **{k: v for k, v in tally.items() if v}})
        root = request.scope.get("root_path", "")
        return RedirectResponse(
            f"{root}/integrations/{_quote(ident)}?{query}#dead-letters", status_code=303
        )

    # -- trace -------------------------------------------------------------------------------

    async def _trace(self, request: Request) -> tuple[Operator, TraceChain | None, list[str], str]:
        operator = self.operator(request)
        ident = (request.query_params.get("id") or "").strip()
        if not ident:
            raise FilterError("id is required: a request id, run id, device id or webhook event id")
        asked = (request.query_params.get("organization") or "").strip() or None
        org = ActivityFilter(organization=asked).scoped_to(operator.organization_id).organization

        def work(conn: Any) -> tuple[TraceChain | None, list[str]]:
            orgs = [org] if org else organizations_of(conn, ident)
            if not orgs:
                raise TraceNotFound(f"no webhook event, run, request or device {ident!r}")
            if len(orgs) > 1:
                return None, orgs
            return build_chain(conn, orgs[0], ident), orgs

        chain, orgs = await self.read(operator, work)
        return operator, chain, orgs, ident

    async def trace_api(self, request: Request) -> Response:
        _, chain, orgs, ident = await self._trace(request)
        if chain is None:
            return _json(
                {
                    "id": ident,
                    "organizations": orgs,
                    "error": "the id is in several organizations: pass organization",
                },
                409,
            )
        return _json(support_bundle(chain))

    async def trace_html(self, request: Request) -> Response:
        operator, chain, orgs, ident = await self._trace(request)
        runs = []
        if chain is not None:
            runs = [
                {
                    "run_id": run.run_id,
                    "url": dagster_run_url(run.run_id, self.environ),
                    "integrations": run.integration_ids,
                    "calls": run.calls_total,
                    "calls_failed": run.calls_failed,
                    "syncs": [redact(jsonable(r)) for r in run.sync_logs],
                }
                for run in chain.runs
            ]
        return self._page(
            request,
            "trace.html",
            operator,
            ident=ident,
            chain=chain,
            organizations=orgs,
            runs=runs,
            rows=[redact(r) for r in chain.activity_rows] if chain else [],
            text=redact_text(render_chain(chain)) if chain else "",
            query=urlencode({"id": ident, "organization": chain.organization_id}) if chain else "",
        )

    async def export_trace(self, request: Request) -> Response:
        operator, chain, orgs, ident = await self._trace(request)
        if chain is None:
            raise FilterError(
                f"{ident!r} is in several organizations ({', '.join(orgs)}): pass organization"
            )
        _log.info("console_export", operator=operator.name, kind="trace", trace_kind=chain.kind)
        name = f"trace-{chain.kind}-{_safe(ident)}"
        if _export_format(request) == "csv":
            return _download(trace_csv(chain), f"{name}.csv", "text/csv")
        return _download(_dumps(support_bundle(chain)), f"{name}.json", "application/json")

    # -- rendering and errors ----------------------------------------------------------------

    def _page(
        self, request: Request, template: str, operator: Operator, **context: Any
    ) -> Response:
        return self.templates.TemplateResponse(
            request,
            template,
            {
                "operator": operator,
                "root": request.scope.get("root_path", ""),
                "nav": template.removesuffix(".html"),
                **context,
            },
            headers=_SECURITY_HEADERS,
        )

    async def on_error(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, _Disabled):
            status, message = (
                503,
                (
                    "the operator console is disabled: no credentials are configured. Set "
                    "SYNC_CONSOLE_TOKEN (a bearer token), SYNC_CONSOLE_PASSWORD (HTTP Basic "
                    "sign-in as SYNC_CONSOLE_USER) or "
                    "SYNC_CONSOLE_TENANT_TOKENS (one credential per organization) — or a write "
                    "credential, SYNC_CONSOLE_WRITE_TOKEN or SYNC_CONSOLE_TENANT_WRITE_TOKENS — "
                    "and restart"
                ),
            )
        elif isinstance(exc, _Unauthenticated):
            return Response(
                "authentication required\n",
                status_code=401,
                headers={**_SECURITY_HEADERS, "www-authenticate": REALM},
                media_type="text/plain",
            )
        elif isinstance(exc, (ScopeError, _ReadOnly, CsrfRefused)):
            status, message = 403, str(exc)
        elif isinstance(exc, _ActionFailed):
            status, message = 409, str(exc)
        elif isinstance(exc, FilterError):
            status, message = 400, str(exc)
        elif isinstance(
            exc, (TraceNotFound, IncidentNotFound, IntegrationNotFound, DeadLetterNotFound)
        ):
            status, message = 404, str(exc)
        elif isinstance(exc, TenantRoleUnavailable):
            _log.error("console_tenant_role_unavailable", error=str(exc))
            status, message = 500, str(exc)
        elif isinstance(exc, WriteRoleUnavailable):
            _log.error("console_write_role_unavailable", error=str(exc))
            status, message = 500, str(exc)
        else:  # pragma: no cover - Starlette only routes the classes registered below
            raise exc
        message = redact_text(message)
        if _wants_json(request):
            return _json({"error": message}, status)
        return self.templates.TemplateResponse(
            request,
            "error.html",
            {"status": status, "message": message, "root": request.scope.get("root_path", "")},
            status_code=status,
            headers=_SECURITY_HEADERS,
        )

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/activity", status_code=307)


def create_console_app(
    store: Store,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Starlette:
    """The console as an ASGI app, to mount under `/console`; credentials from `environ`
    (default os.environ), checked now (a bad configuration fails at start, not per request)."""
    console = Console(store, ConsoleAuth.from_env(environ), environ, clock)
    static = _HERE / "static"
    app = Starlette(
        routes=[
            Route("/", console.home, methods=["GET"]),
            Route("/activity", console.activity_html, methods=["GET"]),
            Route("/overview", console.overview_html, methods=["GET"]),
            Route("/incidents", console.incidents_html, methods=["GET"]),
            Route("/incidents/{incident_id:str}", console.incident_html, methods=["GET"]),
            Route("/integrations/{integration_id:str}", console.integration_html, methods=["GET"]),
            Route(
                "/integrations/{integration_id:str}/dead-letters/replay-due",
                console.replay_due,
                methods=["POST"],
            ),
            Route(
                "/integrations/{integration_id:str}/dead-letters/{letter_id:str}",
                console.dead_letter_html,
                methods=["GET"],
            ),
            Route(
                "/integrations/{integration_id:str}/dead-letters/{letter_id:str}/replay",
                console.replay_letter,
                methods=["POST"],
            ),
            Route(
                "/integrations/{integration_id:str}/dead-letters/{letter_id:str}/quarantine",
                console.quarantine_letter,
                methods=["POST"],
            ),
            Route("/trace", console.trace_html, methods=["GET"]),
            Route("/api/activity", console.activity_api, methods=["GET"]),
            Route("/api/overview", console.overview_api, methods=["GET"]),
            Route("/api/incidents", console.incidents_api, methods=["GET"]),
            Route("/api/incidents/{incident_id:str}", console.incident_api, methods=["GET"]),
            Route(
                "/api/integrations/{integration_id:str}", console.integration_api, methods=["GET"]
            ),
            Route(
                "/api/integrations/{integration_id:str}/devices",
                console.integration_devices_api,
                methods=["GET"],
            ),
            Route(
                "/api/integrations/{integration_id:str}/dead-letters",
                console.dead_letters_api,
                methods=["GET"],
            ),
            Route(
                "/api/integrations/{integration_id:str}/dead-letters/{letter_id:str}",
                console.dead_letter_api,
                methods=["GET"],
            ),
            Route("/api/trace", console.trace_api, methods=["GET"]),
            Route("/export/activity.{format:str}", console.export_activity, methods=["GET"]),
            Route("/export/trace.{format:str}", console.export_trace, methods=["GET"]),
            Route("/export/incidents.{format:str}", console.export_incidents, methods=["GET"]),
            Route(
                "/export/integrations/{integration_id:str}/timeline.{format:str}",
                console.export_timeline,
                methods=["GET"],
            ),
            Route(
                "/static/console.js",
                lambda r: FileResponse(static / "console.js", headers=_SECURITY_HEADERS),
            ),
            Route(
                "/static/console.css",
                lambda r: FileResponse(static / "console.css", headers=_SECURITY_HEADERS),
            ),
        ],
        exception_handlers={
            cls: console.on_error
            for cls in (
                _Disabled,
                _Unauthenticated,
                ScopeError,
                FilterError,
                TraceNotFound,
                IncidentNotFound,
                IntegrationNotFound,
                TenantRoleUnavailable,
                DeadLetterNotFound,
                _ReadOnly,
                CsrfRefused,
                _ActionFailed,
                WriteRoleUnavailable,
            )
        },
    )
    app.state.console = console
    return app


def _with(params: Mapping[str, str], **changes: str | None) -> str:
    """A query string: `params` with `changes` applied (None removes a parameter)."""
    merged = {**params, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v is not None})


def _page_size(value: str | None) -> int:
    if not value:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(value)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise FilterError(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}; got {value!r}")
    return size


def _export_format(request: Request) -> str:
    fmt = request.path_params["format"]
    if fmt not in ("json", "csv"):
        raise FilterError(f"exports are .json or .csv; got .{fmt}")
    return fmt


def _wants_json(request: Request) -> bool:
    path = request.scope.get("path", "")
    return "/api/" in path or "/export/" in path


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


def _json(value: Any, status: int = 200) -> Response:
    return Response(
        _dumps(value), status_code=status, media_type="application/json", headers=_SECURITY_HEADERS
    )


def _download(body: str, filename: str, media_type: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={**_SECURITY_HEADERS, "content-disposition": f'attachment; filename="{filename}"'},
    )


def _quote(ident: str) -> str:
    return quote(ident, safe="")


def _see_letter(request: Request, integration_id: str, letter_id: str, done: str) -> Response:
    """After an action: the letter's page, saying what happened (POST-redirect-GET)."""
    root = request.scope.get("root_path", "")
    return RedirectResponse(
        f"{root}/integrations/{_quote(integration_id)}/dead-letters/{letter_id}?done={done}",
        status_code=303,
    )


def _action_notice(done: str, letter: dict[str, Any]) -> str:
    if done == "nothing":
        return f"Nothing to do: the letter is {letter['status']}."
    if done == "quarantine":
        return "Quarantined: no replay picks it up until it is replayed or requeued."
    if letter["status"] == "resolved":
        return "Replayed: the letter went through and is resolved."
    return (
        f"Replayed, and it failed again: the letter is {letter['status']} "
        f"({letter['error_type']}: {letter['error_message']})."
    )


def _letters_section(request: Request, letters: dict[str, Any]) -> dict[str, Any]:
    """The integration page's dead-letter section: the page of letters, its filter, the link to
    the next page and what a "replay all due" just did (`?replayed=`)."""
    params = dict(letters["filter"])
    if LIMIT_PARAM in request.query_params:
        params[LIMIT_PARAM] = request.query_params[LIMIT_PARAM]
    next_link = (
        "?" + urlencode({**params, AFTER_PARAM: letters["next_cursor"]}) + "#dead-letters"
        if letters["next_cursor"]
        else None
    )
    notice = None
    replayed = request.query_params.get("replayed", "")
    if replayed.isdigit():
        counts = ", ".join(
            f"{int(request.query_params[s])} {s}"
            for s in LETTER_STATUSES
            if request.query_params.get(s, "").isdigit()
        )
        notice = (
            f"Replayed {int(replayed)} due letter(s){': ' + counts if counts else ''}."
            if int(replayed)
            else "No letter was due."
        )
    return {**letters, "all_statuses": LETTER_STATUSES, "next_link": next_link, "notice": notice}


def _safe(ident: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in ident)[:80]
