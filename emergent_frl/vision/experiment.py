"""One image-classification run from a validated configuration to a run directory.

`ImageRunConfig` gathers the data, model, strategy and training settings; `prepare_run` checks
everything, the memory the run will need included, and builds data, model and operator (all bad
input fails here, before any training or writing); `start_run` restores a resumed run from its
checkpoint and only then writes config.json, so a folder that cannot be resumed is left as it was;
`run_image_classification` does all of it and trains, writing config.json, generations.jsonl and
checkpoint.pt through `RunDirectory`. The flat dictionary form (`to_flat`/`from_flat`) is what
config.json holds and what the command line fills, key for key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Callable

import torch

from ..devices import DeviceError, machine_device

from ..runs import RunDirectory
from .checks import check_seed, check_types
from .datasets import DEFAULT_IMAGE_SIZE, NUM_CLASSES, UNKNOWN_CLASSES, DataConfig, ImageData, load_data
from .footprint import Footprint, check_fits, estimate, model_costs
from .models import DEFAULT_WIDTH, build_model, validate_model_args
from .strategies import StrategyConfig
from .trainer import EVAL_BATCH, STREAM_INIT, GenerationTrainer, TrainConfig, derived_generator

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
        check_types(self)
        self.data.validate()
        self.train.validate()
        self.strategy.validate(epochs=self.train.epochs)
        validate_model_args(self.arch, stem=self.stem, width=self.width,
                            image_size=self.data.resolved_image_size())
        check_seed("--seed", self.seed)
        resolve_device(self.device)

    def footprint(self) -> Footprint:
        """The memory this run needs (emergent_frl.vision.footprint), from the shapes alone."""
        size = self.data.resolved_image_size()
        classes = NUM_CLASSES.get(self.data.dataset, UNKNOWN_CLASSES)
        costs = model_costs(self.arch, classes, image_size=size, stem=self.stem, width=self.width)
        return estimate(costs, image_size=size, batch_size=self.train.batch_size,
                        eval_batch=max(EVAL_BATCH, self.train.batch_size), data_bytes=self.data.memory_bytes())

    def check_fits(self, device: torch.device, available: int | None = None) -> None:
        """ValueError naming the flag to reduce when the run would not fit in `device`'s free memory."""
        knobs = {"batch_size": (self.train.batch_size, TrainConfig.batch_size, 1),
                 "image_size": (self.data.resolved_image_size(), DEFAULT_IMAGE_SIZE.get(self.data.dataset, 224), 2),
                 "width": (self.width, DEFAULT_WIDTH.get(self.arch, 1), 1)}
        check_fits(self.footprint(), device, knobs, available)

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
    """'auto' = CUDA when available, else CPU; any device this machine has (emergent_frl.devices)."""
    try:
        return machine_device(name)
    except DeviceError as error:
        raise ValueError(f"--device {name!r}: {error.reason}") from None


def merge_resumed(saved: dict, given: dict) -> dict:
    """The saved flat config with the command line's changes that a resume allows."""
    merged = dict(saved)
    for key, value in given.items():
        if key in RESUMABLE_OVERRIDES:
            merged[key] = value
        elif key in saved and saved[key] != value:
            raise ValueError(f"--{key.replace('_', '-')} {value!r} differs from the resumed run's {saved[key]!r}; "
                             f"a resume may change only {', '.join('--' + k for k in RESUMABLE_OVERRIDES)}")
    if merged.get("strategy") == "long_baseline" and merged.get("generations") != saved.get("generations"):
        raise ValueError(f"--generations {merged.get('generations')}: the long baseline's schedule spans all "
                         f"generations, so a resume must keep --generations {saved.get('generations')}")
    return merged


@dataclass
class PreparedRun:
    config: ImageRunConfig
    device: torch.device
    data: ImageData
    trainer: GenerationTrainer


def prepare_run(config: ImageRunConfig) -> PreparedRun:
    """Validate, check the memory, load the data, build model and operator: every ValueError
    surfaces here, before anything is written."""
    config.validate()
    device = resolve_device(config.device)
    config.check_fits(device)
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


def start_run(prepared: PreparedRun, run_dir: RunDirectory, *, resume: bool) -> int:
    """Restore the trainer from `run_dir`'s checkpoint (resume), then write config.json; returns the
    first generation to train. Every check of what the folder holds (checkpoint, records) comes
    before the first write, so a run that cannot be resumed is left exactly as it was."""
    start = prepared.trainer.restore(run_dir) if resume else 0
    run_dir.write_config(prepared.config.to_flat())
    return start


def run_image_classification(config: ImageRunConfig, out: str | None = None, *, resume: bool = False,
                             on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Train all generations of `config` (into run directory `out` if given); returns the records."""
    prepared = prepare_run(config)
    if out is None:
        return prepared.trainer.run(on_record=on_record)
    with RunDirectory(out, resume=resume) as run_dir:
        start = start_run(prepared, run_dir, resume=resume)
        return prepared.trainer.run(run_dir, start=start, on_record=on_record)
