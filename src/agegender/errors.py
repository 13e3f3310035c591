"""The one exception type for errors a user can cause; the CLI prints it without a traceback."""

from __future__ import annotations


class AgeGenderError(Exception):
    """A user-facing error: the message says what went wrong and what to do about it.

    ``code`` is a short machine-readable kind (``missing_file``, ``unreadable``, ``not_an_image``,
    ``too_large``, ``unknown_model``, ``bad_config``, ...), used by batch records and the HTTP service.
    """

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code

    @property
    def message(self) -> str:
        return str(self)
