"""The one exception type users of the ingest package can cause."""


class IngestError(Exception):
    """A failure the user can fix: bad config, missing model, unreachable store.

    The message is one line that says what to do; the CLI prints it without a
    traceback.
    """


class FileRejected(Exception):
    """One input file cannot be ingested; ``reason`` is a short, user-facing phrase.

    Raised by loaders and caught per file by the pipeline, so one bad file never
    stops a run.
    """

    def __init__(self, reason: str, *, failed: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        # failed=True: the file is broken or unreadable; False: skipped by policy
        # (unsupported type, empty, too large).
        self.failed = failed
