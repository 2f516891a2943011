"""The download step against a real HTTP server on 127.0.0.1 and moto's S3 server."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from specgan.config import DownloadConfig
from specgan.download import SOURCE_INFO, download
from specgan.errors import DownloadError, UnsafeArchiveError
from specgan.hashing import file_sha256
from specgan.storage import s3_client

FAST = DownloadConfig(retries=4, backoff_s=0.01, timeout_s=10)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_http_download_extracts_audio_and_records_provenance(file_server, kit_archive, tmp_path):
    data = kit_archive.read_bytes()
    file_server.files["drums.tar.gz"] = data
    out = tmp_path / "raw"
    res = download(file_server.url("drums.tar.gz"), out, FAST, sha256=hashlib.sha256(data).hexdigest())
    wavs = sorted(out.rglob("*.wav"))
    assert res.n_files == len(wavs) + 1 == 43  # 42 clips plus labels.csv
    assert {p.parent.name for p in wavs} == {"train", "valid", "test"}
    assert (out / SOURCE_INFO).exists()
    assert leftovers(tmp_path) == ["raw"]  # no partial or temporary files left behind


def test_sha256_mismatch_is_clear_and_leaves_nothing(file_server, kit_archive, tmp_path):
    file_server.files["drums.tar.gz"] = kit_archive.read_bytes()
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(file_server.url("drums.tar.gz"), tmp_path / "raw", FAST, sha256="0" * 64)
    assert leftovers(tmp_path) == []


def test_retries_after_two_503s(file_server, kit_archive, tmp_path):
    file_server.files["drums.tar.gz"] = kit_archive.read_bytes()
    file_server.fail_503["drums.tar.gz"] = 2
    res = download(file_server.url("drums.tar.gz"), tmp_path / "raw", FAST)
    assert res.n_files == 43
    assert len(file_server.requests) == 3


def test_permanent_error_is_not_retried(file_server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(file_server.url("missing.tar.gz"), tmp_path / "raw", FAST)
    assert len(file_server.requests) == 1 and leftovers(tmp_path) == []


def test_gives_up_after_retries(file_server, kit_archive, tmp_path):
    file_server.files["drums.tar.gz"] = kit_archive.read_bytes()
    file_server.fail_503["drums.tar.gz"] = 100
    with pytest.raises(DownloadError, match="failed after 4 attempts"):
        download(file_server.url("drums.tar.gz"), tmp_path / "raw", FAST)
    assert leftovers(tmp_path) == []


def test_dropped_connection_resumes_with_range(file_server, kit_archive, tmp_path):
    data = kit_archive.read_bytes()
    file_server.files["drums.tar.gz"] = data
    file_server.drop_after["drums.tar.gz"] = len(data) // 2
    res = download(file_server.url("drums.tar.gz"), tmp_path / "raw", FAST)
    assert res.archive_sha256 == hashlib.sha256(data).hexdigest()
    path, rng = file_server.requests[-1]
    assert len(file_server.requests) == 2 and rng is not None  # the second request resumed
    assert 0 < int(rng.removeprefix("bytes=").rstrip("-")) <= len(data) // 2


def _tar_with(member: tarfile.TarInfo, payload: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        ok = tarfile.TarInfo("drums/train/ok.wav")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"RIFF"))
        tf.addfile(member, io.BytesIO(payload) if payload else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = size
    return info


@pytest.mark.parametrize("member,match", [
    (_member("../x.wav", size=3), "parent path"),
    (_member("/abs/x.wav", size=3), "absolute"),
    (_member("drums/link.wav", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    (_member("drums/hard.wav", tarfile.LNKTYPE, "drums/train/ok.wav"), "is a link"),
    (_member("drums/dev.wav", tarfile.CHRTYPE), "device or special"),
])
def test_unsafe_tar_members_are_refused(file_server, tmp_path, member, match):
    file_server.files["bad.tar.gz"] = _tar_with(member, b"abc" if member.size else b"")
    with pytest.raises(UnsafeArchiveError, match=match):
        download(file_server.url("bad.tar.gz"), tmp_path / "raw", FAST)
    assert leftovers(tmp_path) == []
    assert not (tmp_path.parent / "x.wav").exists()


def test_unsafe_zip_member_is_refused(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.wav", b"abc")
    with pytest.raises(UnsafeArchiveError, match="parent path"):
        download(str(archive), tmp_path / "raw", FAST)
    assert not (tmp_path / "raw").exists()


def test_not_an_archive_is_refused(file_server, tmp_path):
    file_server.files["notes.tar.gz"] = b"this is not an archive" * 100
    with pytest.raises(DownloadError, match="not a tar, tar.gz or zip archive"):
        download(file_server.url("notes.tar.gz"), tmp_path / "raw", FAST)
    assert leftovers(tmp_path) == []


def test_zip_and_folder_sources_keep_only_audio(kit_dir, tmp_path):
    (kit_dir / "drums" / "README.txt").write_text("not audio")
    from specgan.synth_kit import make_kit

    zipped = make_kit(tmp_path / "kit.zip", n_per_class=2, seed=1)
    assert download(str(zipped), tmp_path / "from_zip", FAST).n_files == 15
    res = download(str(kit_dir), tmp_path / "from_dir", FAST)
    assert res.n_files == 43 and not list((tmp_path / "from_dir").rglob("*.txt"))


def test_failed_refresh_keeps_the_previous_good_download(file_server, kit_archive, tmp_path):
    out = tmp_path / "raw"
    download(str(kit_archive), out, FAST)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(DownloadError):
        download(str(kit_archive), out, FAST, sha256="1" * 64)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_s3_source_against_moto(s3_server, kit_archive, tmp_path):
    client = s3_client()
    client.create_bucket(Bucket="datasets")
    client.upload_file(str(kit_archive), "datasets", "drums/drums.tar.gz")
    res = download("s3://datasets/drums/drums.tar.gz", tmp_path / "raw", FAST,
                   sha256=file_sha256(kit_archive))
    assert res.n_files == 43
    with pytest.raises(DownloadError, match="s3://datasets/nope.tar.gz"):
        download("s3://datasets/nope.tar.gz", tmp_path / "raw2", FAST)
