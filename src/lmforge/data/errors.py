"""Errors of the ``prepare`` stages and the one-line description of an output ``OSError``.

A ``PrepareError`` is a ``ValueError``, so the CLI prints it as one line (``lmforge prepare STAGE: error: ...``).
Output failures (disk full, file too large, permissions) are their own class so that they are never reported
as a bad input, and their message names the cause in words next to the errno (``disk full (ENOSPC: ...)``).
"""

from __future__ import annotations

import errno


class PrepareError(ValueError):
    """A user error in a ``prepare`` stage (bad path or option); the CLI prints it as one line."""


class InputChangedError(PrepareError):
    """An input file changed or disappeared between discovery and the end of its reading: the output would
    match no version of the inputs, so none is kept."""


class OutputWriteError(PrepareError):
    """Writing the output failed (disk full, permissions, I/O error): never to be mistaken for a bad input."""


_OS_ERROR_WORDS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
    errno.EACCES: "permission denied",
    errno.EROFS: "read-only file system",
}


def os_error_text(error: BaseException | None) -> str | None:
    """``"disk full (ENOSPC: No space left on device)"`` for an ``OSError`` with an errno, else None."""
    if not isinstance(error, OSError) or error.errno is None:
        return None
    cause_text = f"{errno.errorcode.get(error.errno, error.errno)}: {error.strerror or error}"
    return f"{_OS_ERROR_WORDS.get(error.errno, 'I/O error')} ({cause_text})"
