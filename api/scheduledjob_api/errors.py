"""The one exception type the HTTP layer turns into an error envelope."""

from __future__ import annotations

from typing import Any, Final

FORBIDDEN: Final = "You do not have permission to access this API endpoint."
NOT_FOUND: Final = "Scheduled job not found"


class ApiError(Exception):
    """An expected failure with its HTTP status and the text for the envelope's `error`."""

    def __init__(self, status: int, error: str, *, data: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.data = data
        self.headers = headers or {}


def not_found() -> ApiError:
    return ApiError(404, NOT_FOUND)
