"""Log output for the ``sendarix`` command: one line per record, with fields.

Records carry structured fields through ``extra`` (``action``,
``message_id``, ``attempt``…); the formatter appends them as ``key=value``
so a line reads ``… sendarix.delivery message delivered action=… message_id=…``.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}


class FieldFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{name}={value}"
            for name, value in record.__dict__.items()
            if name not in _STANDARD_ATTRIBUTES and value is not None
        ]
        if not fields:
            return line
        head, newline, rest = line.partition("\n")
        return f"{head} {' '.join(fields)}{newline}{rest}"


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        FieldFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
    )
    root = logging.getLogger("sendarix")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
