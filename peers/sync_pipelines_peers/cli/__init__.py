"""The peers' commands (`demo`, `emulator`, `peer`, `peers`), found by the product's CLI through
this distribution's `sync_pipelines.cli` entry points."""
