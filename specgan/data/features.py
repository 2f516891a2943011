"""The features step: every clip of the dataset to a log-magnitude STFT, sharded and in parallel.

Shard ``i`` of ``k`` holds a fixed contiguous range of the sorted file list, so the shards
concatenated in order are the same for any shard or worker count, and a Kubeflow fan-out over
shard indices computes exactly what the local process pool computes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from specgan.core.atomic import atomic_dir, atomic_path, check_out_dir, write_json
from specgan.core.config import FeaturesConfig
from specgan.core.errors import FeaturesError
from specgan.core.hashing import stream_sha256
from specgan.data.audio_files import list_audio, printable_name, read_labels, unusable_reason
from specgan.data.running_stats import RunningStats
from specgan.data.shards import shard_stems
from specgan.data.spectral import LogSpectrogram, RejectedClip, decode_clip

CHUNK_CLIPS = 64
WHOLE_READ_BYTES = 16 << 20  # larger clip files are hashed in pieces and decoded from disk (bounded memory)
MANIFEST_FIELDS = ["index", "path", "sha256", "sample_rate", "channels", "duration_s", "label"]
SUMMARY = "summary.json"


@dataclass(frozen=True)
class ShardResult:
    index: int
    n_clips: int
    rejects: list[tuple[str, str]]


def shard_name(index: int, n_shards: int) -> str:
    """File stem of one shard."""
    return f"shard-{index:05d}-of-{n_shards:05d}"


def shard_files(files: list[str], index: int, n_shards: int) -> list[str]:
    """The contiguous slice of the sorted file list that shard ``index`` owns."""
    n = len(files)
    return files[index * n // n_shards:(index + 1) * n // n_shards]


def select_files(data_dir: str | Path, split: str) -> list[str]:
    """Sorted audio files of the split; a clear error when there are none."""
    try:
        files = list_audio(data_dir, split)
    except FileNotFoundError as exc:
        raise FeaturesError(str(exc)) from None
    if not files:
        raise FeaturesError(f"no audio files for split {split!r} under {data_dir}")
    return files


def featurize_shard(data_dir: str | Path, out_dir: str | Path, index: int, n_shards: int,
                    split: str, cfg: FeaturesConfig, all_files: list[str] | None = None,
                    labels: dict[str, str] | None = None, labels_mode: str = "manifest") -> ShardResult:
    """Featurize one shard: ``<stem>.npy`` [n, bins, frames] float32, ``<stem>.manifest.csv``,
    ``<stem>.rejects.csv`` and ``<stem>.stats.npz`` (sufficient statistics), each written atomically.

    ``all_files`` and ``labels`` save listing the dataset again when the caller already did."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = shard_files(all_files if all_files is not None else select_files(data_dir, split), index, n_shards)
    labels = labels if labels is not None else read_labels(data_dir, labels_mode)
    stem = out_dir / shard_name(index, n_shards)
    row_shape = (cfg.n_bins, cfg.n_frames)
    stats = RunningStats(cfg.n_bins)
    manifest, rejects = [], []
    with atomic_path(stem.with_suffix(".npy")) as tmp_npy, open(tmp_npy, "wb") as fh:
        header_len = _write_npy_header(fh, (len(files), *row_shape))
        stft, batch, peaks, feats_buf = _work_buffers(cfg, threading.get_ident())
        root = os.fspath(data_dir)
        for start in range(0, len(files), CHUNK_CLIPS):
            k = 0
            for rel in files[start:start + CHUNK_CLIPS]:
                path = os.path.join(root, rel)  # os.path: pathlib costs about 10 us a clip here
                reason = unusable_reason(path, rel, check_regular=False)  # read_clip_file checks that
                if reason:
                    rejects.append((printable_name(rel), reason))
                    continue
                try:
                    data, digest = read_clip_file(path)
                    _, peaks[k], meta = decode_clip(path, cfg, data, out=batch[k, :cfg.clip_samples])
                except (RejectedClip, OSError) as exc:
                    rejects.append((rel, str(exc) if isinstance(exc, RejectedClip) else f"unreadable file: {exc}"))
                    continue
                k += 1
                manifest.append([len(manifest), rel, digest, meta.sample_rate,
                                 meta.channels, round(meta.duration_s, 6), labels.get(rel, "")])
            if k:
                feats = stft.padded_rows(batch[:k], peaks[:k], out=feats_buf[:k])
                block = RunningStats.of(feats)
                if not np.isfinite(block.mean).all():  # cannot happen after the checks above; never let it through
                    raise FeaturesError(f"non-finite features in shard {index}")
                fh.write(feats.astype("<f4", copy=False).data)  # C order, as the header says
                stats.merge(block)
        _finish_npy(fh, header_len, (len(manifest), *row_shape))
    _write_csv(stem.with_suffix(".manifest.csv"), MANIFEST_FIELDS, manifest)
    _write_csv(stem.with_suffix(".rejects.csv"), ["path", "reason"], rejects)
    with atomic_path(stem.with_suffix(".stats.npz"), suffix=".npz") as tmp:
        stats.save(tmp)
    return ShardResult(index, len(manifest), rejects)


@lru_cache(maxsize=2)
def _work_buffers(cfg: FeaturesConfig, thread: int) -> tuple[LogSpectrogram, np.ndarray, np.ndarray, np.ndarray]:
    """The STFT and the chunk buffers (about 20 MB), made once per thread and features config: a worker that
    runs several shards would otherwise fault every page in again for each. ``batch`` rows: each clip is
    decoded into one, whose tail (the STFT's zero padding) stays zero; ``peaks``: each row's peak, which the
    STFT applies; ``feats``: the chunk's features."""
    stft = LogSpectrogram(cfg)
    batch = np.zeros((CHUNK_CLIPS, stft.row_samples))
    return stft, batch, np.empty(CHUNK_CLIPS), np.empty((CHUNK_CLIPS, cfg.n_bins, cfg.n_frames), dtype=np.float32)


def read_clip_file(path: str) -> tuple[bytes | None, str]:
    """A clip file's bytes and sha256, with one open and no race between check and read: O_NONBLOCK (a FIFO
    never blocks), then fstat (anything but a regular file is a reject). A file over ``WHOLE_READ_BYTES`` is
    hashed in pieces (``hashing.stream_sha256``) and its bytes are not returned (None): the decoder then
    reads only the frames it needs, so one huge file costs no more memory than a small one."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb", buffering=0) as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RejectedClip("not a regular file")
        if info.st_size <= WHOLE_READ_BYTES:
            data = fh.readall()
            return data, hashlib.sha256(data).hexdigest()
        return None, stream_sha256(fh)


def _write_npy_header(fh: io.BufferedWriter, shape: tuple[int, ...]) -> int:
    np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return fh.tell()


def _finish_npy(fh: io.BufferedWriter, header_len: int, shape: tuple[int, ...]) -> None:
    """Rewrite the reserved header with the final row count (numpy pads headers for this)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    if buf.tell() != header_len:
        raise FeaturesError("npy header size changed; cannot finalize shard")
    fh.flush()
    fh.seek(0)
    fh.write(buf.getvalue())


def _write_csv(dest: Path, header: list[str], rows: list) -> None:
    with atomic_path(dest) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _shard_job(args: tuple) -> ShardResult:
    """One shard in a worker process, with one thread for torch (the resampler): one core per worker."""
    if "torch" in sys.modules:  # imported before the fork: its thread pool is set already
        sys.modules["torch"].set_num_threads(1)
    else:  # imported later, on the first clip to resample: torch reads this when it starts
        os.environ["OMP_NUM_THREADS"] = "1"
    return featurize_shard(*args)


def run_features(data_dir: str | Path, out_dir: str | Path, cfg: FeaturesConfig, split: str,
                 workers: int | None = None, metrics: str | Path | None = None, labels_mode: str = "manifest") -> dict:
    """Featurize every shard with a process pool, then write rejects and a summary
    (also to ``metrics``, a DVC metrics file, when given). ``labels_mode`` is ``data.labels``: each clip's
    class goes into the shard manifests."""
    t0 = time.perf_counter()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    check_out_dir(out_dir, "features", (data_dir,))
    files = select_files(data_dir, split)
    workers = workers or cfg.workers or os.cpu_count() or 1
    labels = read_labels(data_dir, labels_mode)
    with atomic_dir(out_dir, "features", (data_dir,)) as tmp:
        jobs = [(data_dir, tmp, i, cfg.shards, split, cfg, files, labels) for i in range(cfg.shards)]
        results = []
        with tqdm(total=len(files), desc="features", unit="clip") as bar:
            if workers == 1:
                for job in jobs:
                    results.append(featurize_shard(*job))
                    bar.update(len(shard_files(files, job[2], cfg.shards)))
            else:
                with ProcessPoolExecutor(max_workers=min(workers, cfg.shards)) as pool:
                    for res in pool.map(_shard_job, jobs):
                        results.append(res)
                        bar.update(len(shard_files(files, res.index, cfg.shards)))
        summary = merge_summary(tmp, results, len(files), split, time.perf_counter() - t0)
    if metrics:
        write_json(metrics, summary)
    return summary


def merge_summary(out_dir: Path, results: list[ShardResult], n_files: int, split: str,
                  seconds: float) -> dict:
    """Write ``rejects.csv`` and ``summary.json`` over all shards; fail if nothing was usable."""
    rejects = [r for res in sorted(results, key=lambda r: r.index) for r in res.rejects]
    _write_csv(out_dir / "rejects.csv", ["path", "reason"], rejects)
    clips = sum(r.n_clips for r in results)
    by_reason = Counter(reason.split(":", 1)[0] for _, reason in rejects)
    summary = {"split": split, "files": n_files, "clips": clips, "rejected": len(rejects),
               "rejects_by_reason": dict(sorted(by_reason.items())), "shards": len(results),
               "seconds": round(seconds, 3)}
    if clips == 0:
        raise FeaturesError(f"every one of the {n_files} files was rejected; first: {rejects[0][0]}: {rejects[0][1]}")
    write_json(out_dir / SUMMARY, summary)
    return summary


def gather_shards(shard_dirs: list[str | Path], out_dir: str | Path, split: str, seconds: float = 0.0) -> dict:
    """Fan-in: collect shard folders (one per Kubeflow task) into one features folder with its summary."""
    import shutil

    results = []
    with atomic_dir(out_dir, "features", tuple(shard_dirs)) as tmp:
        for folder in shard_dirs:
            for path in Path(folder).glob("shard-*-of-*.*"):
                shutil.copy2(path, tmp / path.name)
        for stem in shard_stems(tmp):
            with open(stem.with_suffix(".rejects.csv"), newline="") as fh:
                rejects = [(r["path"], r["reason"]) for r in csv.DictReader(fh)]
            n = int(np.load(stem.with_suffix(".npy"), mmap_mode="r").shape[0])
            index = int(stem.name.split("-")[1])
            results.append(ShardResult(index, n, rejects))
        n_files = sum(r.n_clips + len(r.rejects) for r in results)
        summary = merge_summary(tmp, results, n_files, split, seconds)
    return summary


def load_manifest(features_dir: str | Path) -> list[dict]:
    """All shard manifests concatenated in order."""
    rows: list[dict] = []
    for stem in shard_stems(features_dir):
        with open(stem.with_suffix(".manifest.csv"), newline="") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


def read_summary(features_dir: str | Path) -> dict:
    """The summary written by :func:`run_features`."""
    return json.loads((Path(features_dir) / SUMMARY).read_text())
