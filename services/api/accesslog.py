"""Access logs without secrets: /subscriptions/<code> and link tokens are written as '…'."""

from __future__ import annotations

import logging
import re


class RedactCodes(logging.Filter):
    """uvicorn's access log names every request's path: no code or token of one reaches a log."""

    SECRET = re.compile(r"(/subscriptions/)(?!confirm\b|unsubscribe\b)[^/?\s\"]+|(token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "…", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


REDACT = RedactCodes()  # one filter, however many apps a process builds


def install() -> None:
    logging.getLogger("uvicorn.access").addFilter(REDACT)
