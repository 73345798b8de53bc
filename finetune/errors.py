"""The one exception type of ``finetune``: failures a user can cause and fix."""


class FinetuneError(Exception):
    """Bad data, bad settings, a missing model or adapter; the message says what to do."""
