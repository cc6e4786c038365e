"""The one error type of the server: a Databricks-shaped ``{error_code, message}`` answer."""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP error answered as Databricks does: status, ``error_code``, one-line message."""

    def __init__(self, status: int, error_code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error_code": self.error_code, "message": self.message}


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "RESOURCE_CONFLICT", message)


def too_many(message: str, retry_after: float) -> ApiError:
    return ApiError(429, "REQUEST_LIMIT_EXCEEDED", message, {"Retry-After": str(max(1, round(retry_after)))})


def unavailable(message: str, retry_after: float = 1) -> ApiError:
    return ApiError(503, "TEMPORARILY_UNAVAILABLE", message, {"Retry-After": str(max(1, round(retry_after)))})
