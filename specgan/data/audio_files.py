"""Audio file discovery and the label manifest, shared by download, features, evaluate and tests."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from specgan.core.errors import SpecganError

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3"})  # what the decoder reads
# Audio the decoder (libsndfile) cannot read: listed, then rejected with this reason instead of ignored.
UNSUPPORTED_AUDIO = frozenset({".m4a", ".aac", ".wma", ".alac", ".ape", ".mp2", ".amr", ".opus", ".mid", ".midi"})
LABEL_MANIFEST = "labels.csv"  # class labels of a labelled kit; kept beside the audio by download


def is_audio_name(name: str) -> bool:
    """True for file names with an audio extension (case-insensitive), readable or not."""
    return Path(name).suffix.lower() in AUDIO_EXTENSIONS | UNSUPPORTED_AUDIO


def printable_name(rel: str) -> str:
    """A file name as it can be written to CSV and printed (undecodable bytes as backslash escapes)."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def unusable_reason(path: str | Path, rel: str, check_regular: bool = True) -> str | None:
    """Why a listed file cannot be decoded at all (a reject reason), or None: a format the decoder does not
    read, something that is not a regular file (a FIFO would block the reader forever; ``check_regular``
    False leaves that to a caller that checks the file it opened), a name that is not UTF-8."""
    suffix = os.path.splitext(rel)[1].lower()  # os.path: a third of pathlib's cost, once per clip
    if suffix in UNSUPPORTED_AUDIO:
        return f"unsupported format {suffix} (readable: {', '.join(sorted(AUDIO_EXTENSIONS))})"
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8"
    if check_regular and not os.path.isfile(path):
        return "not a regular file"
    return None


def is_kept_name(name: str) -> bool:
    """Files the download step keeps: audio plus label manifests."""
    return is_audio_name(name) or Path(name).name == LABEL_MANIFEST


def list_audio(root: str | Path, split: str = "all", keep=None) -> list[str]:
    """Sorted relative POSIX paths of the audio files (or the names ``keep`` accepts) under ``root``.

    ``split`` keeps the files below a folder of that name (``train``, ``valid``, ``test``);
    ``all`` keeps every file. Symlinked folders are followed (each real folder once).
    """
    keep = keep or is_audio_name
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    rels = []
    seen: set[str] = set()
    # os.walk: several times faster than Path.rglob on big sets. Symlinked folders are followed, each real
    # folder once (a link back up the tree would otherwise loop forever).
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        parts = Path(folder).relative_to(root).parts
        if split != "all" and split not in parts:
            continue
        rels.extend("/".join((*parts, n)) for n in names if keep(n))
    return sorted(rels)


SPLITS = frozenset({"train", "valid", "test"})


def read_labels(data_dir: str | Path, mode: str = "manifest") -> dict[str, str]:
    """Map each labelled clip's path (relative to ``data_dir``) to its class (``data.labels``):
    ``manifest`` reads every ``labels.csv``; ``folder`` takes the folder a clip sits in (not a split folder);
    ``none`` labels nothing."""
    data_dir = Path(data_dir)
    labels: dict[str, str] = {}
    if mode == "folder":
        for rel in list_audio(data_dir):
            parent = rel.rsplit("/", 2)[-2] if "/" in rel else ""
            if parent and parent not in SPLITS:
                labels[rel] = parent
        return labels
    if mode == "none":
        return labels
    for manifest in sorted(data_dir.rglob(LABEL_MANIFEST)):
        base = manifest.parent.relative_to(data_dir)
        try:
            with open(manifest, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not {"path", "label"} <= set(reader.fieldnames or ()):
                    raise SpecganError(f"{manifest}: a labels file needs the columns path and label; its header is "
                                       f"{','.join(reader.fieldnames or ()) or 'empty'}")
                for row in reader:
                    labels[(base / row["path"]).as_posix()] = row["label"]
        except UnicodeDecodeError as exc:
            raise SpecganError(f"{manifest}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return labels
