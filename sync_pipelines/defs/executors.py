"""Which executor runs the steps of every job, chosen per deployment by `SYNC_EXECUTOR`.

Unset (or `default`): Dagster's default, steps in subprocesses of the run's own process.
`celery`: dagster-celery's executor, steps sent through a broker to Celery workers on any
number of hosts (deploy/README.md). The broker URL carries a password, so the executor reads it
from `SYNC_CELERY_BROKER_URL` at run time (an `env:` config source) — it is never in a file,
never in a run's stored config.
"""

from collections.abc import Mapping

import dagster as dg
from dagster_celery import celery_executor

EXECUTOR_ENV = "SYNC_EXECUTOR"
BROKER_URL_ENV = "SYNC_CELERY_BROKER_URL"
#: where workers send step results back; optional, `rpc://` (through the broker) by default
RESULT_BACKEND_ENV = "SYNC_CELERY_BACKEND_URL"
DEFAULT_RESULT_BACKEND = "rpc://"
#: the queue steps are sent to and workers listen on (`-Q`); one per deployment sharing a broker
QUEUE_ENV = "SYNC_CELERY_QUEUE"
DEFAULT_QUEUE = "dagster"


def executor_from_env(env: Mapping[str, str]) -> dg.ExecutorDefinition:
    """The executor `env` asks for; raises ValueError naming the choices on a typo."""
    choice = env.get(EXECUTOR_ENV, "").strip().lower()
    if choice in ("", "default"):
        return dg.multi_or_in_process_executor
    if choice == "celery":
        backend = (
            {"env": RESULT_BACKEND_ENV} if env.get(RESULT_BACKEND_ENV) else DEFAULT_RESULT_BACKEND
        )
        return celery_executor.configured(
            {
                "broker": {"env": BROKER_URL_ENV},
                "backend": backend,
                "config_source": {"task_default_queue": env.get(QUEUE_ENV) or DEFAULT_QUEUE},
            },
            name="celery",
        )
    raise ValueError(
        f"{EXECUTOR_ENV}={choice!r} is not an executor: use 'default' (or leave it unset) or 'celery'"
    )
