"""The assistant's exceptions: what users can cause, and what a tool says back to the model."""


class AssistantError(Exception):
    """A failure the user can fix: empty question, missing model or adapter, empty collection.

    The message is one line that says what to do; the CLI prints it without a traceback.
    """


class ToolError(Exception):
    """Raised by a tool for a bad request; the message goes back to the model as the tool's error."""
