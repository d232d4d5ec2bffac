"""Reconstruction game with forget-and-relearn: `python -m games.reconstruction --preset ren --out runs/x`.

The sender sees an object and sends a message; the receiver outputs every attribute value
(cross-entropy per attribute). Training runs in generations with the chosen `--strategy`, as in
`python -m games.referential`. Writes RUN_DIR/config.json, generations.jsonl, evaluations.jsonl,
language.json, checkpoint.pt and topsim.png.
"""

from __future__ import annotations

import sys
from typing import Sequence

from analysis.cli import starting

with starting(__name__):  # Ctrl-C while torch loads: one line, exit 130
    from games.cli import main as run_game


def main(argv: Sequence[str] | None = None) -> int:
    return run_game("reconstruction", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
