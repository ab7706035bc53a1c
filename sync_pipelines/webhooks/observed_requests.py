"""ASGI middleware of the receiver: a SERVER span per request when OpenTelemetry is on (continuing
the sender's trace when it sent a `traceparent`; the delivery's activity row is recorded inside
it, so it carries the span's ids), and an error escaping the app reported to Sentry with the
provider, integration and request id of the path. Neither on: the request passes straight
through."""

from __future__ import annotations

from typing import Any

from sync_pipelines.observability import otel, sentry

_WEBHOOK_ROUTE = "/webhooks/{provider}/{integration_id}"


class ObservedRequests:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not (otel.tracing_enabled() or sentry.sentry_enabled()):
            await self.app(scope, receive, send)
            return
        route, tags = _route_of(scope["path"])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        answered: dict[str, int] = {}

        async def send_observed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
            await send(message)

        attributes = {
            "http.request.method": scope["method"],
            "http.route": route,
            "url.path": scope["path"],  # the query may carry a shared secret: never recorded
            "url.scheme": scope.get("scheme", "http"),
            **{f"sync_pipelines.{k}": v for k, v in tags.items()},
        }
        with otel.server_span(f"{scope['method']} {route}", headers, attributes) as span:
            try:
                await self.app(scope, receive, send_observed)
            except Exception as exc:
                sentry.capture_failure(exc, request_id=headers.get("x-request-id"), **tags)
                raise
            finally:
                if span is not None and "status" in answered:
                    span.set_attribute("http.response.status_code", answered["status"])
                    if answered["status"] >= 500:  # a 4xx is the sender's error, not the server's
                        otel.mark_failed(span, str(answered["status"]))


def _route_of(path: str) -> tuple[str, dict[str, str]]:
    parts = path.split("/")
    if len(parts) == 4 and parts[1] == "webhooks":
        return _WEBHOOK_ROUTE, {"provider": parts[2], "integration_id": parts[3]}
    # /health, /metrics, /console (on the console's own server): low-cardinality span names
    return "/" + parts[1], {}
