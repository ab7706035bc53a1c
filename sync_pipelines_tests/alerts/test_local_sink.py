"""The local alert sink records every POST with its JSON body and what it answered, and fails on
demand until told to recover."""

from __future__ import annotations

import httpx
from sync_pipelines_peers.alert_sink import SLACK_PATH, WEBHOOK_PATH, AlertSink


def test_the_sink_records_posts_and_fails_on_demand():
    with AlertSink() as sink:
        assert sink.url.startswith("http://127.0.0.1:")
        assert httpx.post(sink.webhook_url, json={"n": 1}).status_code == 200
        sink.fail(503)
        assert httpx.post(sink.slack_url, json={"n": 2}).status_code == 503
        sink.recover()
        assert httpx.post(sink.slack_url, content=b"not json").status_code == 200

        assert [(p.path, p.body, p.status_code) for p in sink.received] == [
            (WEBHOOK_PATH, {"n": 1}, 200),
            (SLACK_PATH, {"n": 2}, 503),
            (SLACK_PATH, "not json", 200),
        ]
        assert sink.accepted(SLACK_PATH) == ["not json"]
        sink.clear()
        assert sink.received == []
