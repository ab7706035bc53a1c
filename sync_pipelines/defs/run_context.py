"""Dagster context → the plain RunContext the sync layer records with."""

import dagster as dg

from sync_pipelines.sync.session import RunContext


def run_context_of(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> RunContext:
    return RunContext(
        run_id=context.run.run_id,
        step_key=step_key_of(context),
        job_name=context.run.job_name,
    )


def step_key_of(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> str:
    """The step's key as Dagster's event log names it, from public attributes only: the op's name,
    plus `[mapping key]` for a step mapped over a dynamic output. Our ops are neither aliased nor
    nested in graphs, where the key would be the node's path instead (a test pins the equality)."""
    op_context = (
        context.op_execution_context if isinstance(context, dg.AssetExecutionContext) else context
    )
    mapping_key = op_context.get_mapping_key()
    name = op_context.op_def.name
    return f"{name}[{mapping_key}]" if mapping_key else name
