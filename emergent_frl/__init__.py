"""emergent-frl: forget-and-relearn for emergent communication and image classification.

Training runs in generations; between generations a forgetting operator re-initializes, zeroes or
rewinds part of the weights, and training relearns (Zhou et al., "Fortuitous Forgetting in
Connectionist Networks", ICLR 2022).
"""

__version__ = "0.1.0"
