"""The error the Golioth emulator answers with an rpcStatus body, raised by its routes and by
LightDB State alike (the body itself is `golioth.render_rpc_status`)."""

from __future__ import annotations


class RpcError(Exception):
    """An error answered with an rpcStatus body."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
