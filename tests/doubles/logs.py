"""A log handler that keeps every ERROR record: a crash anywhere in the bot shows up here."""

from __future__ import annotations

import logging


class Crashes(logging.Handler):
    """ERROR records from any logger, kept while the handler is installed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def since(self, start: int) -> list[str]:
        found = []
        for record in self.records[start:]:
            text = f"{record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
            found.append(text)
        return found
