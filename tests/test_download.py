"""The download step against a real HTTP server on 127.0.0.1 and moto's S3 server."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from specgan.core.config import DownloadConfig
from specgan.core.errors import DownloadError, UnsafeArchiveError
from specgan.core.hashing import file_sha256
from specgan.data.download import SOURCE_INFO, download
from specgan.data.storage import s3_client

FAST = DownloadConfig(retries=4, backoff_s=0.01, timeout_s=10, deadline_s=60.0, max_extracted_mb=4096.0,
                      max_members=100000, max_ratio=100.0)


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
    with pytest.raises(DownloadError, match="not a tar, tar.gz, tar.bz2, tar.xz or zip archive") as err:
        download(file_server.url("notes.tar.gz"), tmp_path / "raw", FAST)
    assert str(err.value).startswith(file_server.url("notes.tar.gz") + ": ")  # the URL, not a temp file's name
    assert leftovers(tmp_path) == []


def test_a_login_page_served_as_the_archive_is_named_by_its_url(file_server, tmp_path):
    """A private link often answers 200 with a sign-in page: one line that says so and names the URL (redacted),
    never the temporary file."""
    file_server.files["kit.tar.gz"] = b"\n  <!DOCTYPE html><html><head><title>Sign in</title></head></html>" * 20
    work = tmp_path / "work"
    work.mkdir()
    from tests.services import ROOT, run_cli

    url = file_server.url("kit.tar.gz") + "?X-Amz-Signature=abc123secret"
    proc = run_cli("download", "--source", url, "--out", str(work / "raw"), "--params", str(ROOT / "params.yaml"),
                   cwd=work, check=False)
    error = proc.stderr.strip().splitlines()[-1]  # after the transfer's progress bar
    assert proc.returncode == 1 and error.startswith("specgan download: error: ") and "Traceback" not in proc.stderr
    assert "the server sent a web page, not an archive" in error
    assert file_server.url("kit.tar.gz") in proc.stderr and "abc123secret" not in proc.stderr
    assert ".part" not in proc.stderr and leftovers(work) == []


def test_zip_and_folder_sources_keep_only_audio(kit_dir, tmp_path):
    (kit_dir / "drums" / "README.txt").write_text("not audio")
    from specgan.data.synth_kit import make_kit

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


def _tar_bytes(folder: Path, mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        tf.add(folder, arcname="drums")
    return buf.getvalue()


def _flip(data: bytes, n: int = 400) -> bytes:
    """``n`` bytes flipped in the middle (the compressed payload, not the header)."""
    out = bytearray(data)
    mid = len(out) // 2
    for i in range(n):
        out[mid + i] ^= 0xFF
    return bytes(out)


def _cut_at_member_boundary(folder: Path) -> bytes:
    """A valid gzip stream of a tar that stops right after its fifth member (no end marker)."""
    import gzip

    raw = _tar_bytes(folder, "w")
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        members = tf.getmembers()
        fifth = members[5]
        end = fifth.offset_data + ((fifth.size + 511) // 512) * 512
    return gzip.compress(raw[:end])


def _run_download(archive: Path, out: Path, *extra: str):
    from tests.services import ROOT, run_cli

    return run_cli("download", "--source", str(archive), "--out", str(out), "--params", str(ROOT / "params.yaml"),
                   *extra, cwd=out.parent, check=False)


@pytest.mark.parametrize("name,make,message", [
    ("flipped.tar.gz", lambda k: _flip(_tar_bytes(k, "w:gz")), "corrupt tar.gz archive"),
    ("cut.tar.gz", _cut_at_member_boundary, "truncated or corrupt tar archive"),
    ("flipped.tar.bz2", lambda k: _flip(_tar_bytes(k, "w:bz2")), "corrupt tar.bz2 archive"),
    ("flipped.tar.xz", lambda k: _flip(_tar_bytes(k, "w:xz")), "corrupt tar.xz archive"),
    ("half.tar.xz", lambda k: _tar_bytes(k, "w:xz")[:-2000], "corrupt tar.xz archive"),
    ("half.zip", lambda k: None, "truncated"),
    ("flipped.zip", lambda k: None, "corrupt zip archive"),
])
def test_corrupt_or_truncated_archives_are_one_line_errors(kit_dir, tmp_path, name, make, message):
    """Every compressed stream is read to its end and checked; nothing is left behind."""
    archive = tmp_path / name
    if name.endswith(".zip"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(kit_dir.rglob("*.wav")):
                zf.write(path, path.relative_to(kit_dir).as_posix())
        data = buf.getvalue()
        data = data[: len(data) // 2] if name == "half.zip" else _flip(data, 40)
    else:
        data = make(kit_dir)
    archive.write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    proc = _run_download(archive, work / "raw")
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert leftovers(work) == []


def test_archive_limits_refuse_bombs_and_the_real_layout_passes(kit_dir, tmp_path):
    import numpy as np
    import soundfile as sf

    bomb_dir = tmp_path / "bomb"
    bomb_dir.mkdir()
    sf.write(bomb_dir / "silence.wav", np.zeros(16000 * 300), 16000)  # 9.6 MB that gzip makes ~10 KB
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(_tar_bytes(bomb_dir, "w:gz"))
    work = tmp_path / "work"
    work.mkdir()
    proc = _run_download(bomb, work / "raw")
    assert proc.returncode == 1 and "more than download.max_ratio 100" in proc.stderr
    many = _run_download(bomb, work / "raw", "--set", "download.max_ratio=100000",
                         "--set", "download.max_extracted_mb=1.0")
    assert many.returncode == 1 and "more than download.max_extracted_mb 1" in many.stderr
    kit = tmp_path / "kit.tar.gz"
    kit.write_bytes(_tar_bytes(kit_dir, "w:gz"))
    members = _run_download(kit, work / "raw", "--set", "download.max_members=10")
    assert members.returncode == 1 and "more than download.max_members 10" in members.stderr
    assert leftovers(work) == []
    ok = _run_download(kit, work / "raw")  # the defaults pass a real-sized layout
    assert ok.returncode == 0, ok.stderr


def test_a_file_changed_between_attempts_restarts_instead_of_splicing(file_server, kit_archive, kit_dir, tmp_path):
    old = kit_archive.read_bytes()
    new = _tar_bytes(kit_dir, "w:gz")  # another valid archive of another size
    file_server.files["drums.tar.gz"] = old
    file_server.drop_after["drums.tar.gz"] = len(old) // 2
    part_name = None
    try:
        download(file_server.url("drums.tar.gz"), tmp_path / "raw",
                 DownloadConfig(**{**FAST.__dict__, "retries": 1}))
    except DownloadError:
        part_name = [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert part_name  # the first attempt left a partial file to resume
    file_server.files["drums.tar.gz"] = new
    res = download(file_server.url("drums.tar.gz"), tmp_path / "raw", FAST)
    assert res.archive_sha256 == hashlib.sha256(new).hexdigest()  # not old[:half] + new[half:]
    assert file_server.requests[-1][1] is not None  # it asked to resume, and was sent the whole new file
    assert leftovers(tmp_path) == ["raw"]


def test_drip_feeding_server_hits_the_deadline_and_a_redirect_loop_is_one_line(file_server, kit_archive, tmp_path):
    import time

    file_server.files["slow.tar.gz"] = kit_archive.read_bytes()
    file_server.drip["slow.tar.gz"] = 0.05
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="not finished within download.deadline_s"):
        download(file_server.url("slow.tar.gz"), tmp_path / "raw", DownloadConfig(**{**FAST.__dict__,
                                                                                      "deadline_s": 1.0}))
    assert time.monotonic() - t0 < 10
    file_server.redirects.update({"a": "b", "b": "a"})
    with pytest.raises(DownloadError, match="too many redirects"):
        download(file_server.url("a"), tmp_path / "raw2", FAST)


@pytest.mark.parametrize("mode,stream", [("w:gz", "gzip"), ("w:bz2", "bz2")])
def test_a_bomb_appended_after_a_valid_archive_is_refused_without_decompressing_it(kit_dir, tmp_path, mode, stream):
    """A valid archive followed by compressed zeros (concatenated streams decompress as one): refused in one
    line as soon as the data after the tar's end marker exceeds its record padding, not after gigabytes."""
    import bz2
    import gzip
    import time

    zeros = bytes(2**20)
    compress = gzip.compress if stream == "gzip" else bz2.compress
    tail = compress(zeros * 64)  # 64 MB of zeros, at most 64 KB compressed: far inside the ratio limit
    archive = tmp_path / f"tail.tar.{'gz' if stream == 'gzip' else 'bz2'}"
    archive.write_bytes(_tar_bytes(kit_dir, mode) + tail * 16)  # 1 GiB once decompressed
    work = tmp_path / "work"
    work.mkdir()
    t0 = time.perf_counter()
    proc = _run_download(archive, work / "raw")
    assert proc.returncode == 1 and "data after the tar's end" in proc.stderr, proc.stderr[-500:]
    assert len(proc.stderr.strip().splitlines()) == 1 and leftovers(work) == []
    assert time.perf_counter() - t0 < 60  # a fraction of what decompressing the gigabyte would cost


def test_member_sizes_are_checked_before_their_data_is_decompressed(tmp_path):
    """A member header that claims 8 GB of zeros: refused at that header, before anything skips over it."""
    import gzip
    import time

    head = tarfile.TarInfo("drums/train/big.wav")
    head.size = 8 * 2**30
    zeros = gzip.compress(bytes(2**24), compresslevel=1)
    archive = tmp_path / "big.tar.gz"
    archive.write_bytes(gzip.compress(head.tobuf()) + zeros * 64)
    work = tmp_path / "work"
    work.mkdir()
    t0 = time.perf_counter()
    proc = _run_download(archive, work / "raw")
    assert proc.returncode == 1 and "more than download.max_extracted_mb" in proc.stderr, proc.stderr[-500:]
    assert time.perf_counter() - t0 < 30


def test_a_server_that_ignores_if_range_never_splices_two_versions(file_server, kit_dir, tmp_path):
    """After a dropped connection the file changes, and the server answers the resume with 206 anyway (it
    ignores If-Range): the 206's ETag is not the part's, so the client starts over; the result is the new file,
    whole."""
    import numpy as np
    import soundfile as sf

    old = _tar_bytes(kit_dir, "w")  # a plain .tar: a splice would still parse
    other = tmp_path / "other"
    shutil.copytree(kit_dir, other)
    for wav in sorted(other.rglob("*.wav"))[:3]:
        sf.write(wav, np.full(4000, 0.25), 16000)
    new = _tar_bytes(other, "w")
    file_server.files["kit.tar"] = old
    file_server.drop_after["kit.tar"] = len(old) // 2
    file_server.ignore_if_range.add("kit.tar")
    with pytest.raises(DownloadError):
        download(file_server.url("kit.tar"), tmp_path / "raw", DownloadConfig(**{**FAST.__dict__, "retries": 1}))
    file_server.files["kit.tar"] = new
    result = download(file_server.url("kit.tar"), tmp_path / "raw", FAST)
    assert result.archive_sha256 == hashlib.sha256(new).hexdigest()


def test_the_deadline_covers_a_server_that_never_answers(file_server, tmp_path):
    import time

    file_server.files["hung.tar.gz"] = b"x"
    file_server.silent.add("hung.tar.gz")
    cfg = DownloadConfig(**{**FAST.__dict__, "timeout_s": 60.0, "deadline_s": 2.0, "retries": 5})
    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match="not finished within download.deadline_s"):
        download(file_server.url("hung.tar.gz"), tmp_path / "raw", cfg)
    assert time.perf_counter() - t0 < 6


def test_a_redirect_to_another_scheme_is_one_line(file_server, tmp_path):
    file_server.redirects["kit.tar.gz"] = "file:///etc/passwd"
    work = tmp_path / "work"
    work.mkdir()
    from tests.services import ROOT, run_cli

    proc = run_cli("download", "--source", file_server.url("kit.tar.gz"), "--out", str(work / "raw"),
                   "--params", str(ROOT / "params.yaml"), cwd=work, check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "only http(s) redirects are followed" in proc.stderr and leftovers(work) == []
