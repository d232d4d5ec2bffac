"""One image-classification run from a validated configuration to a run directory.

`ImageRunConfig` gathers the data, model, strategy and training settings; `prepare_run` checks
everything and builds data, model and operator (all bad input fails here, before any training);
`run_image_classification` trains and writes config.json, generations.jsonl and checkpoint.pt
through `RunDirectory`. The flat dictionary form (`to_flat`/`from_flat`) is what config.json holds
and what the command line fills, key for key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Callable

import torch

from ..runs import RunDirectory
from .datasets import DataConfig, ImageData, load_data
from .models import build_model, validate_model_args
from .strategies import StrategyConfig
from .trainer import STREAM_INIT, GenerationTrainer, TrainConfig, derived_generator

# Settings a resumed run may change; everything else must match the saved configuration.
RESUMABLE_OVERRIDES = ("generations", "device", "workers", "compile")


@dataclass(frozen=True)
class ImageRunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    arch: str = "small_cnn"
    stem: str = "imagenet"
    width: int | None = None
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        self.data.validate()
        self.train.validate()
        self.strategy.validate(epochs=self.train.epochs)
        validate_model_args(self.arch, stem=self.stem, width=self.width,
                            image_size=self.data.resolved_image_size())
        if not 0 <= self.seed < 2**31:
            raise ValueError(f"--seed {self.seed}: allowed range is 0..2147483647")
        resolve_device(self.device)

    def to_flat(self) -> dict:
        flat = {"arch": self.arch, "stem": self.stem, "width": self.width, "seed": self.seed, "device": self.device}
        flat.update(dataclasses.asdict(self.data))
        flat.update(dataclasses.asdict(self.train))
        strategy = dataclasses.asdict(self.strategy)
        flat["strategy"] = strategy.pop("name")
        flat.update(strategy)
        return flat

    @classmethod
    def from_flat(cls, flat: dict) -> "ImageRunConfig":
        known = {f.name for f in fields(cls)} | {f.name for c in (DataConfig, TrainConfig, StrategyConfig) for f in fields(c)}
        unknown = sorted(set(flat) - known - {"strategy"})
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")

        def pick(klass, **renamed):
            values = {f.name: flat[f.name] for f in fields(klass) if f.name in flat}
            values.update({k: flat[v] for k, v in renamed.items() if v in flat})
            return klass(**values)

        top = {k: flat[k] for k in ("arch", "stem", "width", "seed", "device") if k in flat}
        return cls(data=pick(DataConfig), train=pick(TrainConfig), strategy=pick(StrategyConfig, name="strategy"), **top)


def set_threads(threads: int | None) -> None:
    """`--threads N`: torch's CPU threads (None keeps torch's choice); checked before any work."""
    if threads is None:
        return
    if not 1 <= threads <= 512:
        raise ValueError(f"--threads {threads}: allowed range is 1..512")
    torch.set_num_threads(threads)


def resolve_device(name: str) -> torch.device:
    """'auto' = CUDA when available, else CPU; an unavailable CUDA device is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: allowed CUDA indices are 0..{torch.cuda.device_count() - 1}")
    elif device.type not in ("cpu", "mps", "xpu"):
        raise ValueError(f"--device {name}: allowed are auto, cpu, cuda[:N], mps, xpu")
    return device


def merge_resumed(saved: dict, given: dict) -> dict:
    """The saved flat config with the command line's changes that a resume allows."""
    merged = dict(saved)
    for key, value in given.items():
        if key in RESUMABLE_OVERRIDES:
            merged[key] = value
        elif key in saved and saved[key] != value:
            raise ValueError(f"--{key.replace('_', '-')} {value!r} differs from the resumed run's {saved[key]!r}; "
                             f"a resume may change only {', '.join('--' + k for k in RESUMABLE_OVERRIDES)}")
    if merged["strategy"] == "long_baseline" and merged["generations"] != saved["generations"]:
        raise ValueError(f"--generations {merged['generations']}: the long baseline's schedule spans all "
                         f"generations, so a resume must keep --generations {saved['generations']}")
    return merged


@dataclass
class PreparedRun:
    config: ImageRunConfig
    device: torch.device
    data: ImageData
    trainer: GenerationTrainer


def prepare_run(config: ImageRunConfig) -> PreparedRun:
    """Validate, load the data, build model and operator: every ValueError surfaces here."""
    config.validate()
    device = resolve_device(config.device)
    data = load_data(config.data, device)
    model = build_model(config.arch, data.num_classes, image_size=data.image_size, in_channels=data.in_channels,
                        stem=config.stem, width=config.width, generator=derived_generator(config.seed, STREAM_INIT))
    operator = config.strategy.build_operator(model, config.arch)
    trainer = GenerationTrainer(model, data, config.train, seed=config.seed, operator=operator,
                                restarts_schedule=config.strategy.restarts_schedule,
                                rewind_epoch=config.strategy.rewind_epoch,
                                rewind_model=config.strategy.rewinds_model, device=device,
                                strategy=config.strategy.name)
    return PreparedRun(config, device, data, trainer)


def open_run_directory(out: str, config: ImageRunConfig, *, resume: bool) -> RunDirectory:
    run_dir = RunDirectory(out, resume=resume)
    run_dir.write_config(config.to_flat())
    return run_dir


def run_image_classification(config: ImageRunConfig, out: str | None = None, *, resume: bool = False,
                             on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Train all generations of `config` (into run directory `out` if given); returns the records."""
    prepared = prepare_run(config)
    run_dir = open_run_directory(out, config, resume=resume) if out is not None else None
    return prepared.trainer.run(run_dir, resume=resume, on_record=on_record)
