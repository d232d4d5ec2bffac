"""Referential game, one generation: `python -m games.referential --preset paper --out runs/x`.

The sender sees a target object and sends a message; the receiver picks the target among
`--n-candidates` objects. Writes RUN_DIR/config.json, generations.jsonl (one record with the greedy
accuracy over all objects and the compositionality scores), evaluations.json, language.json.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from games.cli import build_parser, exit_on_error, run_single_generation

GAME = "referential"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(GAME, description=__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    with exit_on_error(parser):
        record = run_single_generation(args, GAME, argv)
    print(json.dumps({k: record[k] for k in ("generation", "iteration", "accuracy", "topsim")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
