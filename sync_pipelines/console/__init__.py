"""The operator console: a read-only web view of the activity log, served by the receiver."""
