"""Credentials never stored or printed: the user:password@ part of URLs, and the signature and key parameters of
presigned URLs (S3 query-string authentication, both versions, and the usual token names), are dropped from
what is recorded."""

from __future__ import annotations

import re
from typing import Any

_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


# Query parameters that carry a credential (AWS SigV4 and SigV2 presigned URLs, Azure SAS, GCS, tokens).
_SECRET_PARAM = re.compile(
    r"([?&](?:X-Amz-(?:Credential|Signature|Security-Token)|AWSAccessKeyId|Signature|x-amz-security-token|"
    r"sig|X-Goog-(?:Credential|Signature)|GoogleAccessId|token|access_token|api_key|apikey|key|password)=)"
    r"[^&#\s\"']*", re.IGNORECASE)
REDACTED = "REDACTED"


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it removed: ``http://u:p@host/x`` -> ``http://host/x``, and
    ``...?X-Amz-Signature=abc`` -> ``...?X-Amz-Signature=REDACTED``."""
    return _SECRET_PARAM.sub(rf"\1{REDACTED}", _USERINFO.sub(r"\1", text))


def has_credentials(url: str) -> bool:
    """Whether a URL carries a password or a presigned query string (what must never enter a tracked file)."""
    return redact_url(url) != url


def redact_params(value: Any) -> Any:
    """A copy of a nested params dict (or list, or value) with every string passed through :func:`redact_url`."""
    if isinstance(value, dict):
        return {k: redact_params(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_params(v) for v in value]
    return redact_url(value) if isinstance(value, str) else value
