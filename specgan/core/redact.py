"""Credentials never stored or printed: the user:password@ part of URLs is dropped from what is recorded."""

from __future__ import annotations

import re
from typing import Any

_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it removed (``http://u:p@host/x`` -> ``http://host/x``)."""
    return _USERINFO.sub(r"\1", text)


def redact_params(value: Any) -> Any:
    """A copy of a nested params dict (or list, or value) with every string passed through :func:`redact_url`."""
    if isinstance(value, dict):
        return {k: redact_params(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_params(v) for v in value]
    return redact_url(value) if isinstance(value, str) else value
