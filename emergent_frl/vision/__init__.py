"""Image track: classifiers trained in generations with LLF / KE / IMP forgetting.

    from emergent_frl.vision import ImageRunConfig, StrategyConfig, run_image_classification
    records = run_image_classification(ImageRunConfig(strategy=StrategyConfig("llf")), "runs/digits-llf")

Pieces: `models` (torchvision ResNets, a small CNN, an MLP; torchvision is optional and imported
only when asked for), `datasets`/`splits` (digits, CIFAR, Flowers102, ImageFolder trees),
`strategies` (operator per strategy, from `emergent_frl.forgetting`), `trainer` (the generation
loop), `experiment` (config -> run directory), `probe` (targeted forgetting: what is forgotten),
`checks` (each setting's type, finiteness and range) and `footprint` (the memory a run needs,
estimated before any work).
"""

from .datasets import DataConfig, ImageData, load_data
from .experiment import ImageRunConfig, prepare_run, resolve_device, run_image_classification
from .models import build_model
from .probe import ProbeConfig, TargetedForgettingProbe
from .strategies import StrategyConfig
from .trainer import GenerationTrainer, TrainConfig

__all__ = [
    "DataConfig", "ImageData", "load_data", "ImageRunConfig", "prepare_run", "resolve_device",
    "run_image_classification", "build_model", "ProbeConfig", "TargetedForgettingProbe", "StrategyConfig",
    "GenerationTrainer", "TrainConfig",
]
