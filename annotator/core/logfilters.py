"""Logging filters (wired in ``settings.LOGGING``)."""

from __future__ import annotations

import logging


class RefusalsWithoutTraceback(logging.Filter):
    """Keeps Django's one-line "Forbidden (Permission denied): /path" record for a 403 but
    drops its traceback: a refusal by the role table is expected, not an error, and the stack
    (twice per refused page under ``runserver``) buried the real errors in the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True
