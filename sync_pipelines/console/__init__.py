"""The operator console: a read-only web view of the activity log, on its own listener
(`sync-pipelines console`, console/server.py)."""
