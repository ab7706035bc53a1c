"""The operator console: a web view of the activity log, integrations, incidents and traces, on
its own listener (`sync-pipelines console`, console/server.py); read-only, but for the dead-letter
replay and quarantine of operators holding a write credential."""
