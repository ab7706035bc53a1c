"""The integration every check test judges (see check_support.py for the rows around it)."""

from __future__ import annotations

import pytest

from sync_pipelines.store.integrations import Integration
from sync_pipelines_tests.checks.check_support import save


@pytest.fixture
def integ(store) -> Integration:
    return save(store)
