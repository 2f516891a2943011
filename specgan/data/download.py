"""The download step: fetch a dataset (http(s), s3, local archive or folder) and extract its audio safely."""

from __future__ import annotations

import hashlib
import logging
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import requests
import urllib3
from tqdm import tqdm

from specgan.core.atomic import atomic_dir, check_out_dir, write_json
from specgan.core.config import DownloadConfig
from specgan.core.errors import DownloadError, UnsafeArchiveError, first_line
from specgan.core.hashing import file_sha256
from specgan.core.redact import redact_url
from specgan.data.audio_files import is_kept_name, list_audio
from specgan.data.storage import s3_client, split_s3_url

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
            return _from_archive(part, out_dir, source, sha256, cfg)
        finally:
            part.unlink(missing_ok=True)
            _validator_file(part).unlink(missing_ok=True)
    path = Path(source.removeprefix("file://")).expanduser()
    if path.is_dir():
        if sha256:
            raise DownloadError("data.sha256 applies to archives, but the source is a folder")
        return _from_folder(path, out_dir, source)
    if path.is_file():
        return _from_archive(path, out_dir, source, sha256, cfg)
    raise DownloadError(f"dataset source not found: {source}")


def _fetch_remote(url: str, part: Path, cfg: DownloadConfig) -> None:
    """Download to ``part`` with retries and backoff, within ``cfg.deadline_s`` for the whole transfer; resumes
    with a Range request guarded by If-Range, so a file that changed on the server restarts instead of being
    spliced onto the old part."""
    part.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + cfg.deadline_s
    late = DownloadError(f"{redact_url(url)}: not finished within download.deadline_s ({cfg.deadline_s:g} s); the "
                         "partial file is kept and the next run resumes it")
    for attempt in range(1, cfg.retries + 1):
        try:
            if url.startswith("s3://"):
                _fetch_s3(url, part)
            else:
                _fetch_http(url, part, cfg.timeout_s, deadline)
            return
        except requests.TooManyRedirects:
            raise DownloadError(f"{redact_url(url)}: too many redirects (a redirect loop?)") from None
        except (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL,
                requests.exceptions.MissingSchema) as exc:  # e.g. a redirect to file:// or ftp://
            raise DownloadError(f"{redact_url(url)}: refused: {redact_url(first_line(exc, 200))} (only http(s) "
                                "redirects are followed)") from None
        except (_Transient, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.HTTPError) as exc:  # read1 raises urllib3's own errors
            reason = redact_url(first_line(exc, 200))
            if time.monotonic() >= deadline:
                raise late from None
            if attempt == cfg.retries:  # the part file stays: the next run resumes it (If-Range guards it)
                raise DownloadError(f"{redact_url(url)}: failed after {attempt} attempts: {reason}") from None
            delay = min(cfg.backoff_s * 2 ** (attempt - 1), max(0.0, deadline - time.monotonic()))
            log.warning("download attempt %d failed (%s); retrying in %.1fs", attempt, reason, delay)
            time.sleep(delay)
            if time.monotonic() >= deadline:
                raise late from None


def _validator_file(part: Path) -> Path:
    return part.with_name(part.name + ".validator")


def _fetch_http(url: str, part: Path, timeout_s: float, deadline: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    sidecar = _validator_file(part)
    validator = sidecar.read_text() if sidecar.exists() else ""
    # Resume only a part whose version is known: If-Range makes the server send the whole new file if it changed.
    headers = {"Range": f"bytes={have}-", "If-Range": validator} if have and validator else {}
    # Every socket wait (connect, headers, each read) ends by the deadline: a server that never answers
    # cannot hold a run past it.
    timeout = max(0.05, min(timeout_s, deadline - time.monotonic()))
    with requests.get(url, stream=True, timeout=timeout, headers=headers) as resp:
        if resp.status_code == 416:  # our partial file is stale or complete: start over
            part.unlink(missing_ok=True)
            raise _Transient("range not satisfiable, restarting")
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _Transient(f"HTTP {resp.status_code}")
        if resp.status_code >= 400:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: HTTP {resp.status_code} {resp.reason}")
        resumed = resp.status_code == 206 and bool(headers)
        if resumed and not _same_version(resp, validator, have):
            # A server that ignores If-Range answered 206 for another version (or another range): the part
            # cannot be continued. Start over rather than splice two versions.
            part.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            raise _Transient("the server sent part of another version of the file; restarting from the beginning")
        start = have if resumed else 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length else None
        if not resumed:
            new = resp.headers.get("ETag") or resp.headers.get("Last-Modified") or ""
            sidecar.write_text(new) if new else sidecar.unlink(missing_ok=True)
        with open(part, "ab" if resumed else "wb") as fh, _bar(total, start, url) as bar:
            # read1: at most one socket read per call, so a server that drips bytes (and so never trips the
            # per-read timeout) still lets the deadline be checked as each piece arrives.
            while chunk := resp.raw.read1(CHUNK, decode_content=True):
                fh.write(chunk)
                bar.update(len(chunk))
                if time.monotonic() > deadline:
                    raise DownloadError(f"{url}: not finished within download.deadline_s; the partial file is "
                                        "kept and the next run resumes it")
        got = part.stat().st_size
        if total is not None and got < total:
            raise _Transient(f"connection closed after {got} of {total} bytes")


def _same_version(resp: requests.Response, validator: str, have: int) -> bool:
    """A 206 continues our part only if it says it is the same version (its ETag or Last-Modified is our
    validator) and starts where the part ends (Content-Range ``bytes HAVE-...``)."""
    now = resp.headers.get("ETag") or resp.headers.get("Last-Modified") or ""
    content_range = resp.headers.get("Content-Range", "")
    return now == validator and content_range.startswith(f"bytes {have}-")


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
                desc=f"download {redact_url(label).split('?', 1)[0].rsplit('/', 1)[-1]}", leave=False)


def _from_archive(archive: Path, out_dir: Path, source: str, sha256: str, cfg: DownloadConfig) -> DownloadResult:
    actual = file_sha256(archive)
    if sha256 and actual.lower() != sha256.lower():
        raise DownloadError(f"{source}: sha256 mismatch: expected {sha256}, got {actual}")
    with atomic_dir(out_dir, "download", (archive,)) as tmp:
        listing = _extract(archive, tmp, cfg, redact_url(source))  # errors name the source, not a temp file
        return _finish(tmp, out_dir, listing, source, actual)


def _from_folder(folder: Path, out_dir: Path, source: str) -> DownloadResult:
    with atomic_dir(out_dir, "download", (folder,)) as tmp:
        listing = []
        for rel in list_audio(folder, keep=is_kept_name):  # symlinked folders followed; linked files not
            path = folder / rel
            if path.is_file() and not path.is_symlink():
                with open(path, "rb") as fh:
                    listing.append((rel, _copy_stream(fh, tmp / rel)))
        return _finish(tmp, out_dir, listing, source, "")


def _finish(tmp: Path, out_dir: Path, listing: list[tuple[str, str]], source: str,
            archive_sha: str) -> DownloadResult:
    if not listing:
        raise DownloadError(f"{source}: no audio files found")
    # surrogateescape: a file name that is not UTF-8 is hashed as its bytes (features rejects it with a reason)
    version = hashlib.sha256("\n".join(f"{r} {h}" for r, h in sorted(listing)).encode("utf-8", "surrogateescape")
                             ).hexdigest()
    write_json(tmp / SOURCE_INFO, {"source": redact_url(source), "archive_sha256": archive_sha,
                                   "n_files": len(listing), "data_version": version})
    return DownloadResult(out_dir, len(listing), version, archive_sha)


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


COMPRESSION = ((b"\x1f\x8b", "gz"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"))
TAR_END = 1024  # a tar ends with two zero blocks of 512 bytes


def _compression(archive: Path) -> str:
    """The archive's compression from its first bytes ("" for none)."""
    with open(archive, "rb") as fh:
        head = fh.read(6)
    return next((kind for magic, kind in COMPRESSION if head.startswith(magic)), "")


def _extract(archive: Path, dest: Path, cfg: DownloadConfig, name: str) -> list[tuple[str, str]]:
    """Verify the whole archive, check every member, then extract only regular audio files; ``name``, the
    source as the user wrote it (redacted), is what every error names."""
    kind = _compression(archive)
    if kind or tarfile.is_tarfile(archive):
        return list(_extract_tar(archive, dest, kind, cfg, name))
    if zipfile.is_zipfile(archive):
        return list(_extract_zip(archive, dest, cfg, name))
    with open(archive, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        raise DownloadError(f"{name}: the server sent a web page, not an archive (a login or error page? a "
                            "private link needs its credentials in the environment, see the README)")
    raise DownloadError(f"{name}: not a tar, tar.gz, tar.bz2, tar.xz or zip archive, or a truncated one")


def _check_limits(name: str, n_members: int, total: int, archive_size: int, cfg: DownloadConfig) -> None:
    if n_members > cfg.max_members:
        raise UnsafeArchiveError(f"{name}: {n_members} members, more than download.max_members {cfg.max_members}")
    if total > cfg.max_extracted_mb * 2**20:
        raise UnsafeArchiveError(f"{name}: members hold {total / 2**20:.0f} MB, more than download.max_extracted_mb "
                                 f"{cfg.max_extracted_mb:g}")
    if total > cfg.max_ratio * max(archive_size, 1):
        raise UnsafeArchiveError(f"{name}: members hold {total / max(archive_size, 1):.0f}x the archive's size, "
                                 f"more than download.max_ratio {cfg.max_ratio:g}")


def _verify_tar_stream(archive: Path, kind: str, label: str, end: int, name: str) -> None:
    """Read the whole (decompressed) stream: every compressed block and its checksum, and the tar's end
    marker where the last member header said the archive ends (a cut at a member boundary, or a corrupt
    header that ends the member list early, would otherwise pass as a shorter archive)."""
    import bz2
    import gzip
    import lzma

    opener = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open, "": open}[kind]
    pos, tail = 0, b""
    limit = -(-(end + TAR_END) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE  # the end marker, padded to a record
    with opener(archive, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            if pos + len(block) > end and len(tail) < TAR_END:
                start = max(end - pos, 0)
                tail += block[start:start + TAR_END - len(tail)]
            pos += len(block)
            if pos > limit:  # stop decompressing: trailing data (a bomb appended to a valid archive) is refused
                raise UnsafeArchiveError(f"{name}: corrupt {label} archive (data after the tar's end: damaged, "
                                         "or something appended; not decompressed further): refused")
    if len(tail) < TAR_END or tail.count(0) != TAR_END:
        raise DownloadError(f"{name}: truncated or corrupt tar archive (no end marker after the last "
                            "member)")


def _extract_tar(archive: Path, dest: Path, kind: str, cfg: DownloadConfig,
                 name: str) -> Iterator[tuple[str, str]]:
    import lzma

    label = f"tar.{kind}" if kind else "tar"
    try:
        with tarfile.open(archive) as tf:
            # Header by header, each checked before the next read skips (decompresses) its member's data.
            members, total, size = [], 0, archive.stat().st_size
            while (m := tf.next()) is not None:
                members.append(m)
                total += m.size if m.isfile() else 0
                _check_limits(name, len(members), total, size, cfg)
            for m in members:
                _check_member_name(m.name)
                if m.issym() or m.islnk():
                    raise UnsafeArchiveError(f"archive member {m.name!r} is a link: refused")
                if not (m.isfile() or m.isdir()):
                    raise UnsafeArchiveError(f"archive member {m.name!r} is a device or special file: refused")
            _verify_tar_stream(archive, kind, label, tf.offset, name)
            for m in members:
                if m.isfile() and is_kept_name(m.name):
                    src = tf.extractfile(m)
                    assert src is not None
                    rel = Path(m.name).as_posix()
                    yield rel, _copy_stream(src, dest / rel)
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
        raise DownloadError(f"{name}: corrupt {label} archive ({first_line(exc, 200)})") from None


def _extract_zip(archive: Path, dest: Path, cfg: DownloadConfig, name: str) -> Iterator[tuple[str, str]]:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _check_limits(name, len(infos), sum(i.file_size for i in infos), archive.stat().st_size, cfg)
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
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:  # CRC checked as each member is read
        raise DownloadError(f"{name}: corrupt zip archive ({first_line(exc, 200)})") from None


def read_source_info(data_dir: str | Path) -> dict:
    """The provenance record written by :func:`download` (empty if the folder has none)."""
    import json

    path = Path(data_dir) / SOURCE_INFO
    return json.loads(path.read_text()) if path.exists() else {}

