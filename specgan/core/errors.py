"""Errors a user can act on: the CLI prints them as one line and exits 1."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's message cut to its first line (and ``limit`` characters), or its type's name when empty:
    what a one-line error quotes of a library's exception."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


class SpecganError(RuntimeError):
    """Base of every user-facing error of the pipeline."""


class DownloadError(SpecganError):
    """The dataset could not be fetched or verified."""


class UnsafeArchiveError(DownloadError):
    """An archive member could escape the output folder or is not a plain file."""


class FeaturesError(SpecganError):
    """The features step cannot produce a usable dataset."""


class StatsError(SpecganError):
    """The statistics cannot normalize the data."""


class TrainError(SpecganError):
    """Training cannot start or cannot go on."""


class OutputRefused(SpecganError):
    """An ``--out`` folder that replacing would destroy data the step did not write."""
