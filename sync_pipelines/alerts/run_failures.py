"""Failed runs as alerts: the run-failure sensor raises `run_failed:<job>:<partition>` with the
failure it records (one incident while the job keeps failing for that integration, its repeats
counted), and the next successful run of the same job and partition resolves it."""

from __future__ import annotations

from sync_pipelines.alerts.rules import CRITICAL, RUN_FAILED, Condition, dedupe_key

NO_PARTITION = "-"


def run_failure_subject(job_name: str, partition_key: str | None) -> str:
    return f"{job_name}:{partition_key or NO_PARTITION}"


def run_failure_key(job_name: str, partition_key: str | None) -> str:
    return dedupe_key(RUN_FAILED, run_failure_subject(job_name, partition_key))


def run_failure_condition(
    *,
    organization_id: str,
    integration_id: str | None,
    run_id: str,
    job_name: str,
    partition_key: str | None,
    step_key: str | None,
    error_type: str | None,
    error_message: str,
) -> Condition:
    where = f" (integration {integration_id})" if integration_id else ""
    step = f" at step {step_key}" if step_key else ""
    return Condition(
        organization_id=organization_id,
        integration_id=integration_id,
        rule=RUN_FAILED,
        subject=run_failure_subject(job_name, partition_key),
        severity=CRITICAL,
        summary=f"run of {job_name}{where} failed{step}: {error_type or 'error'}: {error_message[:500]}",
        details={
            "job_name": job_name,
            "partition_key": partition_key,
            "step_key": step_key,
            "error_type": error_type,
            "last_run_id": run_id,
        },
        run_id=run_id,
    )
