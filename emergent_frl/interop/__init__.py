"""Interoperability with other emergent-communication code: EGG (facebookresearch/EGG).

Nothing here imports EGG at import time: ``egg_sender`` / ``egg_receiver`` load it when called,
and the generation driver only needs torch. See docs/egg.md.
"""
from .egg import EggGenerations, TrainerCallback, evaluate, fresh_optimizer, reset_baselines, run_egg_generations
from .egg_agents import (
    ReconstructionReceiverAgent,
    ReferentialReceiverAgent,
    SenderAgent,
    egg_receiver,
    egg_sender,
    receiver_agent,
)
from ._egg_loader import INSTALL_HINT, require_egg

__all__ = [
    "EggGenerations",
    "INSTALL_HINT",
    "ReconstructionReceiverAgent",
    "ReferentialReceiverAgent",
    "SenderAgent",
    "TrainerCallback",
    "egg_receiver",
    "egg_sender",
    "evaluate",
    "fresh_optimizer",
    "receiver_agent",
    "require_egg",
    "reset_baselines",
    "run_egg_generations",
]
