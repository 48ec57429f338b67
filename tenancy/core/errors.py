"""Errors the CLI turns into one line and an exit code, never a traceback."""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the run happened but a tenant failed; what was measured is written
EXIT_USAGE = 2  # bad input or an unavailable feature; nothing was measured
EXIT_INTERRUPTED = 130


class TenancyError(Exception):
    """A problem the user can fix; `str(err)` is the whole message."""

    exit_code = EXIT_USAGE
