"""IoT Hub error responses for the Azure emulator (PROVIDERS.md §3.5).

The body is `{"Message": "<JSON string>", "ExceptionMessage": "..."}` — `Message` is itself a
JSON document `{errorCode, trackingId, message, timestampUtc}` — or, for old hubs, the legacy
`{"Message": "ErrorCode:<Name>;<message>", ...}`; either way the response carries an
`iothub-errorcode: <Name>` header. Codes are the C# SDK's `ErrorCode` enum.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from sync_pipelines_peers.emulators.faults import ASGIApp, Message, Receive, Scope, Send

ERROR_CODE_HEADER = "iothub-errorcode"

INVALID_PROTOCOL_VERSION = 400001
ARGUMENT_INVALID = 400004
IOTHUB_UNAUTHORIZED_ACCESS = 401002
DEVICE_NOT_FOUND = 404001
PRECONDITION_FAILED = 412001
THROTTLING_EXCEPTION = 429001
SERVER_ERROR = 500001
SERVICE_UNAVAILABLE = 503001

ERROR_NAMES = {
    INVALID_PROTOCOL_VERSION: "InvalidProtocolVersion",
    ARGUMENT_INVALID: "ArgumentInvalid",
    IOTHUB_UNAUTHORIZED_ACCESS: "IotHubUnauthorizedAccess",
    DEVICE_NOT_FOUND: "DeviceNotFound",
    PRECONDITION_FAILED: "PreconditionFailed",
    THROTTLING_EXCEPTION: "ThrottlingException",
    SERVER_ERROR: "ServerError",
    SERVICE_UNAVAILABLE: "ServiceUnavailable",
}
_DEFAULT_CODE_BY_STATUS = {
    400: ARGUMENT_INVALID,
    401: IOTHUB_UNAUTHORIZED_ACCESS,
    404: DEVICE_NOT_FOUND,
    412: PRECONDITION_FAILED,
    429: THROTTLING_EXCEPTION,
    500: SERVER_ERROR,
    503: SERVICE_UNAVAILABLE,
}


def default_error_code(http_status: int) -> int:
    """The code an error of this status carries when nothing more specific is known."""
    return _DEFAULT_CODE_BY_STATUS.get(http_status, http_status * 1000)


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"Error{code}")


class IotHubError(Exception):
    """An error the emulator answers with an IoT Hub error body."""

    def __init__(
        self,
        http_status: int,
        message: str,
        error_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.error_code = error_code or default_error_code(http_status)
        self.headers = headers or {}


def _timestamps() -> tuple[str, str]:
    """(the tracking id's `MM/dd/yyyy HH:mm:ss`, the ISO `timestampUtc`), both UTC."""
    now = time.time()
    t = time.gmtime(now)
    fraction = int((now % 1) * 10_000_000)
    return time.strftime("%m/%d/%Y %H:%M:%S", t), time.strftime(
        "%Y-%m-%dT%H:%M:%S", t
    ) + f".{fraction:07d}Z"


def render_iothub_error(
    http_status: int, message: str, error_code: int | None = None, *, legacy: bool = False
) -> bytes:
    """The IoT Hub error body for a status and a human message."""
    code = error_code or default_error_code(http_status)
    tracking_stamp, stamp = _timestamps()
    tracking_id = f"{uuid.uuid4().hex}-G:0-TimeStamp:{tracking_stamp}"
    if legacy:
        inner = f"ErrorCode:{error_name(code)};{message}"
    else:
        inner = json.dumps(
            {
                "errorCode": code,
                "trackingId": tracking_id,
                "message": message,
                "timestampUtc": stamp,
            },
            separators=(",", ":"),
        )
    body = {"Message": inner, "ExceptionMessage": f"Tracking ID:{tracking_id}"}
    return json.dumps(body, separators=(",", ":")).encode()


def error_code_of_body(body: bytes) -> int | None:
    """The errorCode an IoT Hub error body carries (either format), or None."""
    try:
        outer: Any = json.loads(body)
        inner = outer.get("Message") if isinstance(outer, dict) else None
        if not isinstance(inner, str):
            return None
        if inner.startswith("ErrorCode:"):
            name = inner[len("ErrorCode:") :].partition(";")[0]
            return next((c for c, n in ERROR_NAMES.items() if n == name), None)
        code = json.loads(inner).get("errorCode")
        return code if isinstance(code, int) else None
    except (ValueError, AttributeError):
        return None


class ErrorCodeHeaderMiddleware:
    """Adds `iothub-errorcode` to error responses that lack it (the fault injector renders
    bodies only), reading the code back from the body."""

    def __init__(self, app: ASGIApp, exempt_path_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.exempt_path_prefixes = exempt_path_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_path_prefixes):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_with_header(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if message["status"] < 400 or any(
                    k.lower() == ERROR_CODE_HEADER.encode() for k, _ in headers
                ):
                    await send(message)
                else:
                    held = message  # wait for the body to learn the code
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            code = error_code_of_body(body) or default_error_code(held["status"])
            headers = [
                *held.get("headers", []),
                (ERROR_CODE_HEADER.encode(), error_name(code).encode()),
            ]
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_with_header)
