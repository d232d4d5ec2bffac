"""What older run directories trained with, for the knobs they predate.

A knob added later is missing from the config.json of runs made before it; where the knob's
default differs from what those runs did, reading the default instead would make a resumed run
(or a sweep's started run) switch training halfway, and would make analysis file an old run and an
identical new one under different configurations. Both read saved settings through here. Torch-free:
the analysis package uses it.
"""

from __future__ import annotations

from typing import Any

LANGUAGE_GAMES = ("referential", "reconstruction")


def saved_game_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """A language run's saved settings with the knobs it predates set to what it trained with
    (other runs' settings, e.g. the image track's, are returned as they are)."""
    if saved.get("game") not in LANGUAGE_GAMES:
        return saved
    referential = saved["game"] == "referential"
    before = {
        # Before the knob (2026-11-30), a referential receiver on the reinforce channel sampled its
        # choice and learned by REINFORCE; every other receiver learned from the loss's gradient.
        "receiver_training": ("reinforce" if referential and saved.get("channel", "reinforce") == "reinforce"
                              else "cross_entropy"),
        # ... and every referential receiver had a Linear layer on its message encoding.
        "receiver_head": referential,
    }
    return {**before, **saved}
