"""Correlation: from a device id, a request id, a webhook event id or a run id to the chain of
everything linked to it — webhook, run, provider calls, rows written, dead letters, checks and
alerts (`chain.py`), printed (`render.py`) or exported as a support bundle (`bundle.py`)."""
