"""The download step: fetch a dataset (http(s), s3, local archive or folder) and extract its audio safely."""

from __future__ import annotations

import hashlib
import logging
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import requests
from tqdm import tqdm

from specgan.atomic import atomic_dir, check_out_dir, write_json
from specgan.audio import is_kept_name
from specgan.config import DownloadConfig
from specgan.errors import DownloadError, UnsafeArchiveError
from specgan.hashing import file_sha256
from specgan.storage import s3_client, split_s3_url

log = logging.getLogger(__name__)

SOURCE_INFO = "SOURCE.json"
CHUNK = 1 << 20


class _Transient(Exception):
    """A failure worth retrying (5xx, reset or short transfer)."""


@dataclass(frozen=True)
class DownloadResult:
    out_dir: Path
    n_files: int
    data_version: str
    archive_sha256: str


def download(source: str, out_dir: str | Path, cfg: DownloadConfig, sha256: str = "") -> DownloadResult:
    """Fetch ``source`` and write its audio files to ``out_dir`` (atomically, all or nothing)."""
    out_dir = Path(out_dir)
    remote = source.startswith(("http://", "https://", "s3://"))
    check_out_dir(out_dir, "download", () if remote else (Path(source.removeprefix("file://")).expanduser(),))
    if remote:
        part = out_dir.parent / f".{out_dir.name}.{hashlib.sha256(source.encode()).hexdigest()[:12]}.part"
        _fetch_remote(source, part, cfg)
        try:
            return _from_archive(part, out_dir, source, sha256)
        finally:
            part.unlink(missing_ok=True)
    path = Path(source.removeprefix("file://")).expanduser()
    if path.is_dir():
        if sha256:
            raise DownloadError("data.sha256 applies to archives, but the source is a folder")
        return _from_folder(path, out_dir, source)
    if path.is_file():
        return _from_archive(path, out_dir, source, sha256)
    raise DownloadError(f"dataset source not found: {source}")


def _fetch_remote(url: str, part: Path, cfg: DownloadConfig) -> None:
    """Download to ``part`` with retries and backoff; resumes with a Range request when possible."""
    part.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, cfg.retries + 1):
        try:
            if url.startswith("s3://"):
                _fetch_s3(url, part)
            else:
                _fetch_http(url, part, cfg.timeout_s)
            return
        except (_Transient, requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            if attempt == cfg.retries:
                part.unlink(missing_ok=True)
                raise DownloadError(f"{url}: failed after {attempt} attempts: {exc}") from None
            delay = cfg.backoff_s * 2 ** (attempt - 1)
            log.warning("download attempt %d failed (%s); retrying in %.1fs", attempt, exc, delay)
            time.sleep(delay)


def _fetch_http(url: str, part: Path, timeout_s: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, stream=True, timeout=timeout_s, headers=headers) as resp:
        if resp.status_code == 416:  # our partial file is stale or complete: start over
            part.unlink(missing_ok=True)
            raise _Transient("range not satisfiable, restarting")
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _Transient(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: HTTP {resp.status_code} {resp.reason}")
        resumed = resp.status_code == 206
        start = have if resumed else 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length else None
        with open(part, "ab" if resumed else "wb") as fh, _bar(total, start, url) as bar:
            for chunk in resp.iter_content(CHUNK):
                fh.write(chunk)
                bar.update(len(chunk))
        got = part.stat().st_size
        if total is not None and got < total:
            raise _Transient(f"connection closed after {got} of {total} bytes")


def _fetch_s3(url: str, part: Path) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_url(url)
    client = s3_client()
    try:
        size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        with _bar(size, 0, url) as bar:
            client.download_file(bucket, key, str(part), Callback=bar.update)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code.startswith("5") or code in {"SlowDown", "InternalError", "RequestTimeout"}:
            raise _Transient(str(exc)) from None
        raise DownloadError(f"{url}: {exc}") from None
    except BotoCoreError as exc:
        raise _Transient(str(exc)) from None


def _bar(total: int | None, initial: int, label: str) -> tqdm:
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"download {label.rsplit('/', 1)[-1]}", leave=False)


def _from_archive(archive: Path, out_dir: Path, source: str, sha256: str) -> DownloadResult:
    actual = file_sha256(archive)
    if sha256 and actual.lower() != sha256.lower():
        raise DownloadError(f"{source}: sha256 mismatch: expected {sha256}, got {actual}")
    with atomic_dir(out_dir, "download", (archive,)) as tmp:
        listing = _extract(archive, tmp)
        return _finish(tmp, out_dir, listing, source, actual)


def _from_folder(folder: Path, out_dir: Path, source: str) -> DownloadResult:
    with atomic_dir(out_dir, "download", (folder,)) as tmp:
        listing = []
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink() and is_kept_name(path.name):
                rel = path.relative_to(folder).as_posix()
                with open(path, "rb") as fh:
                    listing.append((rel, _copy_stream(fh, tmp / rel)))
        return _finish(tmp, out_dir, listing, source, "")


def _finish(tmp: Path, out_dir: Path, listing: list[tuple[str, str]], source: str,
            archive_sha: str) -> DownloadResult:
    if not listing:
        raise DownloadError(f"{source}: no audio files found")
    version = hashlib.sha256("\n".join(f"{r} {h}" for r, h in sorted(listing)).encode()).hexdigest()
    write_json(tmp / SOURCE_INFO, {"source": _redact(source), "archive_sha256": archive_sha,
                                   "n_files": len(listing), "data_version": version})
    return DownloadResult(out_dir, len(listing), version, archive_sha)


def _redact(source: str) -> str:
    """Drop any user:password@ part of a URL before it is recorded."""
    if "://" in source and "@" in source.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = source.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return source


def _copy_stream(src: BinaryIO, dest: Path) -> str:
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(dest, "wb") as out:
        for block in iter(lambda: src.read(CHUNK), b""):
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def _check_member_name(name: str) -> None:
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or (parts and (":" in parts[0])) or ".." in parts:
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute or parent path: refused")


def _extract(archive: Path, dest: Path) -> list[tuple[str, str]]:
    """Check every member first, then extract only regular audio files."""
    if tarfile.is_tarfile(archive):
        return list(_extract_tar(archive, dest))
    if zipfile.is_zipfile(archive):
        return list(_extract_zip(archive, dest))
    raise DownloadError(f"{archive.name}: not a tar, tar.gz or zip archive")


def _extract_tar(archive: Path, dest: Path) -> Iterator[tuple[str, str]]:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _check_member_name(m.name)
                if m.issym() or m.islnk():
                    raise UnsafeArchiveError(f"archive member {m.name!r} is a link: refused")
                if not (m.isfile() or m.isdir()):
                    raise UnsafeArchiveError(f"archive member {m.name!r} is a device or special file: refused")
            for m in members:
                if m.isfile() and is_kept_name(m.name):
                    src = tf.extractfile(m)
                    assert src is not None
                    rel = Path(m.name).as_posix()
                    yield rel, _copy_stream(src, dest / rel)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DownloadError(f"{archive.name}: corrupt tar archive ({exc})") from None


def _extract_zip(archive: Path, dest: Path) -> Iterator[tuple[str, str]]:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_member_name(info.filename)
                kind = (info.external_attr >> 16) & 0o170000
                if kind == 0o120000:
                    raise UnsafeArchiveError(f"archive member {info.filename!r} is a link: refused")
                if kind not in (0, 0o100000, 0o040000):
                    raise UnsafeArchiveError(f"archive member {info.filename!r} is a special file: refused")
            for info in infos:
                if not info.is_dir() and is_kept_name(info.filename):
                    with zf.open(info) as src:
                        yield info.filename, _copy_stream(src, dest / info.filename)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"{archive.name}: corrupt zip archive ({exc})") from None


def read_source_info(data_dir: str | Path) -> dict:
    """The provenance record written by :func:`download` (empty if the folder has none)."""
    import json

    path = Path(data_dir) / SOURCE_INFO
    return json.loads(path.read_text()) if path.exists() else {}

