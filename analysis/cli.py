"""What the analysis commands share: bad input is one `error: ...` line on stderr and exit code 2."""

from __future__ import annotations

import sys
from typing import Callable


def run_command(body: Callable[[], None]) -> int:
    """Run a command's body; a ValueError (bad paths, metrics, settings) becomes exit code 2."""
    try:
        body()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
