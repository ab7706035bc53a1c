"""Every SQL statement of the package lives in `sync_pipelines/store/` (issue 16: one place per
concept): no module elsewhere calls `sqlalchemy.text` or `exec_driver_sql`."""

from __future__ import annotations

import ast
from pathlib import Path

import sync_pipelines

PACKAGE = Path(sync_pipelines.__file__).parent
STORE = PACKAGE / "store"

#: modules outside store/ still allowed to write SQL, each with the reason. Empty today; a module
#: added here is a debt, named so it gets paid (move its queries into a store module).
ALLOWED: dict[str, str] = {}


def _sql_calls(tree: ast.AST) -> list[int]:
    """Lines calling `sa.text`, `sqlalchemy.text`, a `text` imported from sqlalchemy, or
    `exec_driver_sql` on anything."""
    text_names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
        for alias in node.names
        if alias.name == "text"
    }
    sqlalchemy_names = {"sqlalchemy"} | {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "sqlalchemy"
    }

    def writes_sql(func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id in text_names
        if not isinstance(func, ast.Attribute):
            return False
        if func.attr == "exec_driver_sql":
            return True
        return (
            func.attr == "text"
            and isinstance(func.value, ast.Name)
            and (func.value.id in sqlalchemy_names)
        )

    lines = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and writes_sql(node.func)
    ]
    return lines


def _sql_outside_store() -> dict[str, list[int]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if STORE in path.parents:
            continue
        lines = _sql_calls(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        if lines:
            found[path.relative_to(PACKAGE.parent).as_posix()] = lines
    return found


def test_no_sql_statement_is_written_outside_the_store() -> None:
    unexpected = {
        path: lines for path, lines in _sql_outside_store().items() if path not in ALLOWED
    }
    assert not unexpected, (
        "SQL outside sync_pipelines/store/ (move each query into a store module, a function "
        f"taking a Connection and the organization id): {unexpected}"
    )


def test_the_allow_list_names_only_modules_that_still_write_sql() -> None:
    stale = sorted(set(ALLOWED) - set(_sql_outside_store()))
    assert not stale, f"no SQL left in {stale}: remove them from ALLOWED"


def test_the_scan_finds_each_way_of_writing_sql() -> None:
    source = (
        "import sqlalchemy as sa\nimport sqlalchemy\nfrom sqlalchemy import text as t\n"
        "sa.text('SELECT 1')\nsqlalchemy.text('SELECT 1')\nt('SELECT 1')\n"
        "conn.exec_driver_sql('SELECT 1')\nreport.text('not SQL')\n"
    )
    assert _sql_calls(ast.parse(source)) == [4, 5, 6, 7]
