"""Reports over the store: the integration-health report (data, Markdown, terminal table, chart).
No Dagster here: `defs/reports.py` materializes it, `cli/reports.py` prints it."""
