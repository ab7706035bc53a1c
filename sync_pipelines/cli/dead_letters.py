"""`sync-pipelines replay`, `quarantine` and `dead-letters list|requeue`: the operator's hands on
dead letters, by id (repeatable), id range (ids are time-ordered) or time range, always within
one organization. `dead-letters list` prints a table (`--json`: one JSON object a letter); the
commands that move letters print JSON lines: one per letter, then a summary."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from sync_pipelines.cli.context import cli_actor, store_session

if TYPE_CHECKING:
    from sync_pipelines.store.database import Store
    from sync_pipelines.store.dead_letters import DeadLetter, DeadLetterSelection


@dataclass(frozen=True, slots=True)
class _Criteria:
    """What the operator typed to name letters."""

    organization_id: str
    integration_id: str | None
    ids: tuple[str, ...]
    from_id: str | None
    to_id: str | None
    since: datetime | None
    until: datetime | None
    stream: str | None

    def selection(
        self, statuses: tuple[str, ...] = (), *, everything: bool = True
    ) -> DeadLetterSelection:
        from sync_pipelines.store.dead_letters import STREAMS, DeadLetterSelection

        if self.stream is not None and self.stream not in STREAMS:
            raise click.BadParameter(
                f"unknown stream {self.stream!r} (one of {', '.join(STREAMS)})",
                param_hint="--stream",
            )
        selection = DeadLetterSelection(
            integration_id=self.integration_id,
            ids=self.ids,
            from_id=self.from_id,
            to_id=self.to_id,
            since=_utc(self.since),
            until=_utc(self.until),
            stream=self.stream,
            statuses=statuses,
        )
        if not selection.narrows and not everything:
            raise click.UsageError(
                "name the letters: --id, --from-id/--to-id, --since/--until, or --all"
            )
        return selection


def _selection_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options every dead-letter command names letters with, handed over as one `_Criteria`."""

    @functools.wraps(command)
    def with_criteria(
        organization_id: str,
        integration_id: str | None,
        ids: tuple[str, ...],
        from_id: str | None,
        to_id: str | None,
        since: datetime | None,
        until: datetime | None,
        stream: str | None,
        **rest: Any,
    ) -> None:
        command(
            _Criteria(organization_id, integration_id, ids, from_id, to_id, since, until, stream),
            **rest,
        )

    options = [
        click.option("--organization", "organization_id", required=True),
        click.option(
            "--integration", "integration_id", default=None, help="Only this integration."
        ),
        click.option("--id", "ids", multiple=True, help="A dead letter id (repeatable)."),
        click.option(
            "--from-id", default=None, help="Ids from this one (inclusive; ids sort by creation)."
        ),
        click.option("--to-id", default=None, help="Ids up to this one (inclusive)."),
        click.option(
            "--since",
            type=click.DateTime(),
            default=None,
            help="Last failed at or after this UTC time.",
        ),
        click.option(
            "--until", type=click.DateTime(), default=None, help="Last failed before this UTC time."
        ),
        click.option(
            "--stream",
            default=None,
            help="devices, device_states, desired_exports, telemetry or webhook_events.",
        ),
    ]
    for option in reversed(options):
        with_criteria = option(with_criteria)
    return with_criteria


@click.command("replay")
@_selection_options
@click.option(
    "--all", "everything", is_flag=True, help="Every unresolved letter the filters match."
)
@click.option("--dry-run", is_flag=True, help="Print what would be replayed; change nothing.")
def replay(criteria: _Criteria, everything: bool, dry_run: bool) -> None:
    """Replay dead letters now — due or not, quarantined ones too: each that now goes through is
    resolved, the rest stay retrying (or are quarantined at their last attempt)."""
    from sync_pipelines.store.dead_letters import NOT_RESOLVED
    from sync_pipelines.sync.operator_actions import Actor, replay_letters

    with store_session(writes=True, organization_id=criteria.organization_id) as store:
        letters = _select(store, criteria, criteria.selection(NOT_RESOLVED, everything=everything))
        chosen = {letter.id for letter in letters}
        for skipped in (i for i in dict.fromkeys(criteria.ids) if i not in chosen):
            click.echo(json.dumps({"action": "skipped", "id": skipped, "status": "resolved"}))
        if dry_run:
            _print_letters(letters, action="would_replay")
            return
        actor = Actor.new("cli", cli_actor())
        for outcome in replay_letters(store, criteria.organization_id, letters, actor):
            click.echo(
                json.dumps(
                    {
                        "run_id": actor.run_id,
                        "integration_id": outcome.integration_id,
                        "status": outcome.result.status,
                        **outcome.result.metadata(),
                    }
                )
            )
        _print_letters(_select(store, criteria, _by_ids(letters)), action="replayed")


@click.command("quarantine")
@_selection_options
@click.option(
    "--all", "everything", is_flag=True, help="Every pending/retrying letter the filters match."
)
@click.option("--reason", default=None, help="Why (kept in the activity log).")
@click.option("--dry-run", is_flag=True, help="Print what would be quarantined; change nothing.")
def quarantine(criteria: _Criteria, everything: bool, reason: str | None, dry_run: bool) -> None:
    """Set pending/retrying dead letters aside: no replay picks them up until they are requeued."""
    from sync_pipelines.store.dead_letters import UNRESOLVED
    from sync_pipelines.sync.operator_actions import Actor, quarantine_letters

    with store_session(writes=True, organization_id=criteria.organization_id) as store:
        selection = criteria.selection(UNRESOLVED, everything=everything)
        if dry_run:
            _print_letters(_select(store, criteria, selection), action="would_quarantine")
            return
        _check_ids_exist(store, criteria)
        moved = quarantine_letters(
            store, criteria.organization_id, selection, Actor.new("cli", cli_actor()), reason=reason
        )
        _print_letters(moved, action="quarantined")


@click.group("dead-letters")
def dead_letters() -> None:
    """List and requeue dead letters (`replay` and `quarantine` are commands of their own)."""


@dead_letters.command("list")
@_selection_options
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["pending", "retrying", "resolved", "quarantined"]),
    help="Repeatable.",
)
@click.option("--limit", type=int, default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON lines, every field.")
def list_letters(criteria: _Criteria, statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Print dead letters, oldest first: a table, or JSON lines with --json."""
    from sync_pipelines.store.dead_letters import list_dead_letters

    with (
        store_session(writes=False, organization_id=criteria.organization_id) as store,
        store.connect() as conn,
    ):
        letters = list_dead_letters(
            conn, criteria.organization_id, criteria.selection(statuses), limit=limit
        )
    if as_json:
        for letter in letters:
            click.echo(json.dumps(letter.as_json(), default=str))
        return
    click.echo("\n".join(_letters_table(letters)))


_LETTER_HEADERS = (
    "ID",
    "INTEGRATION",
    "STREAM",
    "DEVICE",
    "STATUS",
    "ATTEMPTS",
    "LAST FAILED",
    "REQUEST",
    "ERROR",
)


def _letters_table(letters: list[DeadLetter]) -> list[str]:
    from sync_pipelines.text_table import render_table

    if not letters:
        return ["(no dead letters)"]
    return render_table(
        _LETTER_HEADERS,
        [
            (
                letter.id,
                letter.integration_id,
                letter.stream,
                letter.external_id,
                letter.status,
                f"{letter.attempts}/{letter.max_attempts}",
                letter.last_failed_at.strftime("%Y-%m-%d %H:%M:%S"),
                letter.request_id,
                f"{letter.error_type}: {letter.error_message or ''}",
            )
            for letter in letters
        ],
        max_widths={"ERROR": 80},
    )


@dead_letters.command("requeue")
@_selection_options
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Every unresolved or quarantined letter the filters match.",
)
def requeue(criteria: _Criteria, everything: bool) -> None:
    """Put letters back in line: pending, attempts reset, due now (the replay sensor takes them)."""
    from sync_pipelines.store.dead_letters import NOT_RESOLVED
    from sync_pipelines.sync.operator_actions import Actor, requeue_letters

    with store_session(writes=True, organization_id=criteria.organization_id) as store:
        selection = criteria.selection(NOT_RESOLVED, everything=everything)
        _check_ids_exist(store, criteria)
        moved = requeue_letters(
            store, criteria.organization_id, selection, Actor.new("cli", cli_actor())
        )
        _print_letters(moved, action="requeued")


# ---------------------------------------------------------------------------------------------


def _select(store: Store, criteria: _Criteria, selection: DeadLetterSelection) -> list[DeadLetter]:
    from sync_pipelines.store.dead_letters import list_dead_letters

    _check_ids_exist(store, criteria)
    with store.connect() as conn:
        return list_dead_letters(conn, criteria.organization_id, selection)


def _by_ids(letters: list[DeadLetter]) -> DeadLetterSelection:
    from sync_pipelines.store.dead_letters import DeadLetterSelection

    return DeadLetterSelection(ids=tuple(letter.id for letter in letters))


def _check_ids_exist(store: Store, criteria: _Criteria) -> None:
    """Named ids must be this organization's letters: a typo is an error, not a silent no-op."""
    if not criteria.ids:
        return
    from sync_pipelines.store.dead_letters import DeadLetterSelection, list_dead_letters

    with store.connect() as conn:
        found = {
            d.id
            for d in list_dead_letters(
                conn, criteria.organization_id, DeadLetterSelection(ids=criteria.ids)
            )
        }
    unknown = sorted(set(criteria.ids) - found)
    if unknown:
        raise click.ClickException(
            f"organization {criteria.organization_id!r} has no dead letter(s) {', '.join(unknown)}"
        )


def _print_letters(letters: list[DeadLetter], *, action: str) -> None:
    for letter in letters:
        click.echo(
            json.dumps(
                {
                    "action": action,
                    "id": letter.id,
                    "integration_id": letter.integration_id,
                    "stream": letter.stream,
                    "external_id": letter.external_id,
                    "status": letter.status,
                    "attempts": letter.attempts,
                    "error_message": letter.error_message,
                }
            )
        )
    click.echo(json.dumps({"action": action, "count": len(letters)}))


def _utc(value: datetime | None) -> datetime | None:
    """click.DateTime gives naive times: they are UTC, like every time the store holds."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
