"""Object storage access (S3 or MinIO through boto3); the endpoint comes from the environment."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse


def s3_endpoint() -> str | None:
    """The S3 endpoint: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or MLFLOW_S3_ENDPOINT_URL (None = AWS)."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        if os.environ.get(name):
            return os.environ[name]
    return None


def s3_client() -> Any:
    """A boto3 S3 client configured from the environment (credentials never pass through params)."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint())


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URL: {url}")
    return parsed.netloc, parsed.path.lstrip("/")
