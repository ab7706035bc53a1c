"""Fixtures for the Dagster-object tests: one test instance per module, wiped before each test."""

from collections.abc import Iterator

import dagster as dg
import pytest


@pytest.fixture(scope="module")
def module_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def instance(module_instance) -> dg.DagsterInstance:
    """A test instance shared by the module, wiped (runs, events, partitions) before each test."""
    module_instance.wipe()
    return module_instance
