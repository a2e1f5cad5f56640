"""The one error the local server answers with: an HTTP status and OpenAI's error body."""

from __future__ import annotations

from typing import Any


class ServeError(Exception):
    """A request the server answers with an error; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": None,
                          "code": self.code}}
