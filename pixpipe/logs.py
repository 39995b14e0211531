"""Logging for the long-running commands: the image a line is about on every line (a context
variable set per message, put on each record by a filter), as text or as JSON lines."""

from __future__ import annotations

import json
import logging
import os
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.aio.msg import Msg

log = logging.getLogger("pixpipe")
# The image a log line is about: set for each message a role handles, put on every record.
image_key: ContextVar[str] = ContextVar("image_key", default="-")


class ImageKeyFilter(logging.Filter):
    """Adds ``image_key`` to every record (``-`` outside a message's handling)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.image_key = image_key.get()
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, image key, message (and the error)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record), "level": record.levelname, "logger": record.name,
            "key": getattr(record, "image_key", "-"), "message": record.getMessage(),
        }  # fmt: skip
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging() -> None:
    """Logging for the long-running commands: the image key on every line, as text, or as
    JSON lines when ``PIXPIPE_LOG_FORMAT=json`` (for log shippers)."""
    handler = logging.StreamHandler()
    handler.addFilter(ImageKeyFilter())
    if os.environ.get("PIXPIPE_LOG_FORMAT", "").lower() == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(image_key)s] %(message)s")
        )
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for noisy in ("pyvips", "watchfiles", "httpx", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def message_key(msg: Msg) -> str:
    """The ``key`` (or batch ``id``) of a JSON event, for the log lines of its handling."""
    try:
        doc = json.loads(msg.data)
    except ValueError:
        return "-"
    return str(doc.get("key") or doc.get("id") or "-") if isinstance(doc, dict) else "-"


__all__ = ["ImageKeyFilter", "JsonLines", "configure_logging", "image_key", "log", "message_key"]
