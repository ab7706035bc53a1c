"""COPY on Postgres: binary when every copied column allows it, text otherwise; both store the
same values, and a bad value is refused with the column named."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sync_pipelines.store import pg_copy
from sync_pipelines.store.pg_copy import copy_rows

pytestmark = pytest.mark.parametrize("store", ["postgres"], indirect=True)

COLUMNS = ("t", "j", "ts", "b", "i", "n", "f")
ROWS = [
    {
        "t": 'Ünïcode "quoted" \\ tab\t line\n',
        "j": '{"a":[1,2.5,null],"é":"✓"}',
        "ts": datetime(2025, 2, 12, 7, 52, 26, 509000, tzinfo=UTC),
        "b": True,
        "i": 7,
        "n": 2**40,
        "f": 0.1,
    },
    {
        "t": "",
        "j": "[]",
        "ts": datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        "b": False,
        "i": -1,
        "n": 0,
        "f": 3,
    },  # an int in a float column
    {"t": None, "j": None, "ts": None, "b": None, "i": None, "n": None, "f": None},
]


def _create(conn, name: str, extra: str = "") -> None:
    conn.exec_driver_sql(
        f"CREATE TABLE {name} (t text, j jsonb, ts timestamptz, b boolean, i integer, "
        f"n bigint, f double precision{extra})"
    )


def _read(conn, name: str) -> list[tuple]:
    return conn.exec_driver_sql(
        f"SELECT t, j, ts, b, i, n, f FROM {name} ORDER BY i NULLS LAST"
    ).all()


def test_binary_copy_stores_what_text_copy_stores(store):
    with store.transaction() as conn:
        _create(conn, "copy_binary")
        _create(conn, "copy_text", ", u uuid")  # a uuid column keeps this table on text COPY
        copy_rows(conn, "copy_binary", COLUMNS, ROWS)
        copy_rows(conn, "copy_text", (*COLUMNS, "u"), [{**r, "u": str(uuid.uuid4())} for r in ROWS])
        binary, text = _read(conn, "copy_binary"), _read(conn, "copy_text")
        cursor = conn.connection.driver_connection.cursor()
        assert pg_copy._binary_types(cursor, "copy_binary", COLUMNS) is not None
        assert pg_copy._binary_types(cursor, "copy_text", (*COLUMNS, "u")) is None
        # the same table, without its uuid column in the copy, may go binary
        assert pg_copy._binary_types(cursor, "copy_text", COLUMNS) is not None
        conn.exec_driver_sql("DROP TABLE copy_binary; DROP TABLE copy_text")
    assert binary == text
    assert {row[4]: row for row in binary}[7][1] == {"a": [1, 2.5, None], "é": "✓"}
    assert binary[-1] == (None,) * 7


def test_a_json_column_takes_only_serialised_text(store):
    with store.transaction() as conn:
        _create(conn, "copy_dict")
        with pytest.raises(Exception, match="serialised JSON text, not dict"):
            copy_rows(conn, "copy_dict", COLUMNS, [{**ROWS[0], "j": {"a": 1}}])


def test_a_nul_byte_is_refused_naming_the_column(store):
    with store.transaction() as conn:
        _create(conn, "copy_nul")
        with pytest.raises(Exception, match=r"0x00(.|\n)*column t"):
            copy_rows(conn, "copy_nul", COLUMNS, [{**ROWS[0], "t": "bad\x00name"}])
