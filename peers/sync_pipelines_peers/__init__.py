"""Local peers for development, tests and demos: provider emulators, peer launchers, the MQTT
device simulator, the demo and a local alert sink. Never imported by `sync_pipelines`."""
