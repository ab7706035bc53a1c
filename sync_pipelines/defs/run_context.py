"""Dagster context → the plain RunContext the sync layer records with."""

import dagster as dg

from sync_pipelines.sync.session import RunContext


def run_context_of(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> RunContext:
    op_context = (
        context.op_execution_context if isinstance(context, dg.AssetExecutionContext) else context
    )
    return RunContext(
        run_id=context.run.run_id,
        step_key=op_context.get_step_execution_context().step.key,
        job_name=context.run.job_name,
    )
