"""`ApiError`: a client-facing failure with its HTTP status, rendered in the OpenAI error shape (`as_api_error`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from toolformer.errors import ConfigError
from toolformer.serve.batcher import Cancelled

logger = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
    504: "timeout_error",
}


class ApiError(Exception):
    """An error answered as `{"error": {"message", "type", "param", "code"}}` with HTTP `status`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def as_api_error(exc: BaseException) -> ApiError:
    """What a client is told about `exc`: itself if an ApiError, 504, 503 (cancelled), 400 (config) or a logged 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return ApiError(504, "the request timed out", code="timeout")
    if isinstance(exc, Cancelled):
        return ApiError(503, str(exc), code="cancelled")
    if isinstance(exc, ConfigError):
        return ApiError(400, str(exc))
    logger.error("request failed", exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}", code="internal_error")
