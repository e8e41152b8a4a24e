"""How the commands report a user's error: the errors that are the user's (:data:`USER_ERRORS`) and their one-line
form on the terminal. Imports no torch, so that ``clmae --help`` stays fast."""

from __future__ import annotations

# Errors the commands report as one line and exit code 2: bad input (ValueError) and files that are missing,
# unreadable or in the way (OSError: FileNotFoundError, NotADirectoryError, PermissionError, ...).
USER_ERRORS = (ValueError, OSError)


def error_line(error: BaseException) -> str:
    """An error as one line for the terminal (``clmae CMD: error: LINE``): its message with line breaks folded; for
    an error that a DataLoader worker re-raised (whose text holds the worker's traceback), the original message."""
    text = str(error) or type(error).__name__
    if "Original Traceback" in text:  # "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback ..."
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())
