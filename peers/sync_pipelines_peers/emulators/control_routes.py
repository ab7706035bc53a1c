"""The control API every emulator shares, mounted under `/_emulator` (never faulted):
`/faults` (GET the active faults, POST one spec or a list, DELETE all) and `/requests`
(GET the request log, `?limit=N` for the most recent N; DELETE to clear). Emulator-specific
knobs (devices, clock, throttle, stats) are the emulator's own routes next to these."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipelines_peers.emulators.faults import FaultInjector
from sync_pipelines_peers.emulators.request_log import RequestLog


def fault_and_request_routes(injector: FaultInjector, request_log: RequestLog) -> list[Route]:
    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            injector.clear()
            return JSONResponse({"faults": []})
        if request.method == "POST":
            try:
                body = json.loads(await request.body())
                added = injector.add(body if isinstance(body, list) else [body])
            except ValueError as exc:  # bad JSON or a bad spec: say which
                return JSONResponse({"message": f"invalid fault spec: {exc}"}, status_code=400)
            return JSONResponse({"faults": added}, status_code=201)
        return JSONResponse({"faults": injector.active()})

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            request_log.clear()
            return JSONResponse({"requests": []})
        entries = request_log.entries()
        limit_text = request.query_params.get("limit", "")
        limit = int(limit_text) if limit_text.isdigit() else len(entries)
        recent = entries[-limit:] if limit else []
        return JSONResponse({"total": request_log.total, "requests": [r.to_json() for r in recent]})

    return [
        Route("/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/requests", requests, methods=["GET", "DELETE"]),
    ]
