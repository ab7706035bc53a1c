"""`python -m sync_pipelines.cli`: the same command as `sync-pipelines`."""

from sync_pipelines.cli import main

main()
