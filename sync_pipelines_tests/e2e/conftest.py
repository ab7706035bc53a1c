"""Fixtures of the end-to-end tests: one running deployment per module (webserver + daemon on
Postgres), a GraphQL client on it, the Dagster instance it writes to (for reading what the
daemon did), and where artifacts such as screenshots go.

The tests of a module follow one user through one deployment, so a module runs on one xdist
worker: `--dist loadscope` in pyproject's addopts (xdist_group marks are silently ignored by
pytest-xdist 3.8 under pytest 9). Each test still brings what it needs through module-scoped
fixtures, so any one of them also runs alone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient

from sync_pipelines_tests.e2e.stack import REPO, DagsterStack, running_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[DagsterStack]:
    with running_stack() as running:
        yield running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed test's report ends with the tail of the webserver's and the daemon's logs."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(stack, DagsterStack):
        report.sections.append(("dagster-webserver and dagster-daemon logs", stack.log_tails()))
    return report


@pytest.fixture(scope="module")
def instance(stack: DagsterStack) -> Iterator[dg.DagsterInstance]:
    """The deployment's instance, as the webserver and daemon see it."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in stack.env.items():
            if name.startswith("DAGSTER_PG_"):  # what its yaml reads
                env.setenv(name, value)
        with dg.DagsterInstance.from_config(str(stack.home)) as instance:
            yield instance


@pytest.fixture(scope="module")
def client(stack: DagsterStack) -> DagsterGraphQLClient:
    return DagsterGraphQLClient("127.0.0.1", port_number=stack.port, timeout=60)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """`$SYNC_TEST_ARTIFACTS`, else `<repo>/test-artifacts/`."""
    path = Path(os.environ.get("SYNC_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path
