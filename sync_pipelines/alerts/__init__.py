"""Alerts (SPEC §4.7): rules over the monitoring figures, one incident per condition while it
lasts, notifications to a generic JSON webhook and a Slack-compatible webhook with a cooldown and
a "resolved" message, and a heartbeat that proves the alert path itself works.

`alert_path_health(conn, now)` is exported here for the health command (monitoring.service_health
looks it up on this package)."""

from sync_pipelines.alerts.heartbeat import alert_path_health

__all__ = ["alert_path_health"]
