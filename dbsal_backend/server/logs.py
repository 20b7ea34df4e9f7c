"""Logging that never holds secrets or request contents.

:func:`configure_logging` logs to standard error at ``LOG_LEVEL`` through a
:class:`SecretFilter`, which masks the API key and the basic-auth password wherever they appear,
and anything that looks like a token, password or ``Authorization``/``Cookie`` value. The
server logs one line per request (method, path, status, time); never bodies or headers.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

from .settings import Settings

__all__ = ["SecretFilter", "configure_logging"]

_SECRET_FIELDS = re.compile(
    r"""((?:access_token|api_key|password|refresh|token|basic_auth_pass)["']?\s*[:=]\s*["']?)"""
    r"""[^"'\s,&}]+""", re.IGNORECASE)
_HEADERS = re.compile(r"((?:Authorization|Cookie|Set-Cookie)['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n]+",
                      re.IGNORECASE)


class SecretFilter(logging.Filter):
    """Masks secrets in log records (attach it to a handler)."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _SECRET_FIELDS.sub(r"\1***", text)
        return _HEADERS.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.mask(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True


def configure_logging(settings: Settings) -> None:
    """Log to stderr at ``LOG_LEVEL``, secrets masked; quiet the HTTP clients' debug logs
    (they print request headers)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_dbsal", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] [%(levelname)s] [%(name)s] %(message)s"))
    secrets = [settings.api_key]
    if settings.basic_auth_pass:
        secrets.append(settings.basic_auth_pass.get_secret_value())
    handler.addFilter(SecretFilter(secrets))
    handler._dbsal = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for noisy in ("httpx", "httpcore", "urllib3", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
