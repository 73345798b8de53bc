"""The one exception type users of the assistant package can cause."""


class AssistantError(Exception):
    """A failure the user can fix: empty question, missing model or adapter, empty collection.

    The message is one line that says what to do; the CLI prints it without a traceback.
    """
