"""Errors a user can act on: the CLI prints them as one line and exits 1."""


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
