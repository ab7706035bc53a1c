"""`SYNC_EXECUTOR` chooses the executor of every job; the Celery one reads its broker URL from
the environment when a run resolves its config. (The Celery executor at work, with real
workers: deploy/test_celery_workers.py.)"""

import dagster as dg
import pytest

from sync_pipelines.defs.executors import (
    BROKER_URL_ENV,
    EXECUTOR_ENV,
    QUEUE_ENV,
    executor_from_env,
)

BROKER = "pyamqp://sync:s3cret@rabbit.internal:5672/prod"


def _resolved_config(executor: dg.ExecutorDefinition) -> dict:
    """The executor's config as a run resolves it (a launched run gives no `execution:` block)."""
    result = executor.apply_config_mapping({})
    assert result.success, [e.message for e in result.errors or []]
    return result.value["config"]


@pytest.mark.parametrize("value", [None, "", "default", " Default "])
def test_without_a_choice_jobs_keep_dagsters_default_executor(value):
    env = {} if value is None else {EXECUTOR_ENV: value}
    assert executor_from_env(env) is dg.multi_or_in_process_executor


def test_celery_reads_the_broker_url_from_the_environment_at_run_time(monkeypatch):
    executor = executor_from_env({EXECUTOR_ENV: "celery"})
    monkeypatch.setenv(BROKER_URL_ENV, BROKER)
    config = _resolved_config(executor)
    assert executor.name == "celery"
    assert config["broker"] == BROKER
    assert config["backend"] == "rpc://"
    assert config["config_source"] == {"task_default_queue": "dagster"}


def test_celery_steps_go_to_the_queue_the_environment_names(monkeypatch):
    monkeypatch.setenv(BROKER_URL_ENV, BROKER)
    executor = executor_from_env({EXECUTOR_ENV: "celery", QUEUE_ENV: "sync-staging"})
    assert _resolved_config(executor)["config_source"] == {"task_default_queue": "sync-staging"}


def test_a_run_without_the_broker_variable_fails_naming_it(monkeypatch):
    monkeypatch.delenv(BROKER_URL_ENV, raising=False)
    result = executor_from_env({EXECUTOR_ENV: "celery"}).apply_config_mapping({})
    assert not result.success
    assert BROKER_URL_ENV in result.errors[0].message


def test_an_unknown_executor_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'default'.*'celery'"):
        executor_from_env({EXECUTOR_ENV: "kubernetes"})
