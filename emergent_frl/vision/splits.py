"""Dataset splits that yield (images, labels) batches on a device, and the seeded split helper.

Two kinds share one method, `batches(batch_size, train=..., generator=...)`:
- `TensorSplit`: a small data set held as one tensor on the device (digits, CIFAR). Batches are
  cut by indexing, and augmentation (random shift with zero padding, optional horizontal flip) is
  done on the whole batch at once, so there is no DataLoader or worker overhead. All randomness is
  drawn on the CPU from the given generator, so a seed gives the same batches on any device.
- `LoaderSplit`: image files through a torch DataLoader (pinned memory on CUDA, worker processes),
  with separate train-time and eval-time transforms. Every training item is transformed under its
  own seed drawn from the given generator, so here too a seed fixes the batches, whatever the
  number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TensorAugment:
    """Train-time augmentation of in-memory images: shift by up to `shift` pixels, maybe flip."""

    shift: int = 0
    flip: bool = False


def random_shift(images: torch.Tensor, shift: int, generator: torch.Generator | None) -> torch.Tensor:
    """Each image moved by its own integer offset in [-shift, shift]^2, zero-filled at the border."""
    if shift <= 0:
        return images
    n, c, h, w = images.shape
    padded = F.pad(images, (shift, shift, shift, shift))
    offsets = torch.randint(0, 2 * shift + 1, (2, n), generator=generator).to(images.device)
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


class TensorSplit:
    """Images (uint8 0..255 or float 0..1, N x C x H x W) and labels kept on `device`."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, mean: Sequence[float], std: Sequence[float],
                 augment: TensorAugment = TensorAugment(), device: torch.device | str = "cpu"):
        if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"TensorSplit needs N x C x H x W images and N labels, got {tuple(images.shape)} "
                             f"and {tuple(labels.shape)}")
        device = torch.device(device)
        self.images = images.to(device)
        self.labels = labels.long().to(device)
        self.augment = augment
        self.device = device
        self._mean = torch.tensor(mean, dtype=torch.float32, device=device)[None, :, None, None]
        self._std = torch.tensor(std, dtype=torch.float32, device=device)[None, :, None, None]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _prepare(self, raw: torch.Tensor, train: bool, generator: torch.Generator | None) -> torch.Tensor:
        x = raw.float().div_(255.0) if raw.dtype == torch.uint8 else raw.float()
        if train:
            x = random_shift(x, self.augment.shift, generator)
            if self.augment.flip:
                x = random_flip(x, generator)
        return (x - self._mean) / self._std

    def batches(self, batch_size: int, *, train: bool = False, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Shuffled and augmented when `train`; in order otherwise. A last batch of one is dropped in
        training (BatchNorm cannot normalize a single example)."""
        n = len(self)
        order = torch.randperm(n, generator=generator).to(self.device) if train else None
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if train and stop - start < 2 and n > 1:
                break
            index = order[start:stop] if order is not None else slice(start, stop)
            yield self._prepare(self.images[index], train, generator), self.labels[index]

    def normalized(self) -> torch.Tensor:
        """All images normalized, without augmentation (for probes over the whole split)."""
        return self._prepare(self.images, False, None)


class SeededViews(torch.utils.data.Dataset):
    """Indexed by (example, seed): the transforms of `dataset[example]` draw from torch's global RNG,
    so each item is made inside `fork_rng` seeded with its own seed. Augmentation then depends on
    (run seed, epoch, example) only: not on the worker count, nor on which worker loads an item, and
    the caller's global RNG is left untouched."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        example, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[example]


class EpochOrder(torch.utils.data.Sampler):
    """A training epoch: a shuffled order and one augmentation seed per example, both drawn from
    the generator set for that epoch (the trainer derives it from seed, generation and epoch)."""

    def __init__(self, n: int):
        self.n = n
        self.generator: torch.Generator | None = None

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator)
        seeds = torch.randint(0, 2 ** 62, (self.n,), generator=self.generator)
        return zip(order.tolist(), seeds.tolist())


class LoaderSplit:
    """Image files through a DataLoader: `train_dataset` (augmenting transforms) for training,
    `eval_dataset` (deterministic transforms) for evaluation; both index the same examples.

    The loaders are built once and their worker processes live as long as the split (rather than
    being started again every epoch); each epoch only sets the sampler's generator."""

    def __init__(self, train_dataset, eval_dataset, *, device: torch.device | str = "cpu", workers: int = 4):
        if len(train_dataset) != len(eval_dataset):
            raise ValueError("LoaderSplit: train and eval views must hold the same examples")
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.device = torch.device(device)
        self.workers = workers
        self._train_order = EpochOrder(len(train_dataset))
        self._loaders: dict[tuple[bool, int], torch.utils.data.DataLoader] = {}

    def __len__(self) -> int:
        return len(self.eval_dataset)

    def _loader(self, batch_size: int, train: bool) -> torch.utils.data.DataLoader:
        key = (train, batch_size)
        if key not in self._loaders:
            # a generator of its own: the loader draws its workers' base seed from it, which would
            # otherwise come from (and advance) the global RNG; items are seeded by SeededViews anyway
            options = dict(batch_size=batch_size, num_workers=self.workers, drop_last=False,
                           pin_memory=self.device.type == "cuda", persistent_workers=self.workers > 0,
                           generator=torch.Generator().manual_seed(0))
            self._loaders[key] = (
                torch.utils.data.DataLoader(SeededViews(self.train_dataset), sampler=self._train_order, **options)
                if train else torch.utils.data.DataLoader(self.eval_dataset, shuffle=False, **options))
        return self._loaders[key]

    def batches(self, batch_size: int, *, train: bool = False, generator: torch.Generator | None = None) -> Iterator[Batch]:
        if train:
            self._train_order.generator = generator
        for images, labels in self._loader(batch_size, train):
            if train and images.shape[0] < 2 and len(self) > 1:
                break
            yield (images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True))


def stratified_split(labels: np.ndarray, *, fractions: Sequence[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Split example indices class by class: part k takes round(fractions[k] * n_c) of each class
    (the remainder goes to the last part). Parts are sorted index arrays."""
    labels = np.asarray(labels)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for k, fraction in enumerate(fractions):
            take = int(round(fraction * len(members)))
            parts[k].extend(members[start:start + take].tolist())
            start += take
        parts[-1].extend(members[start:].tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def take_per_class(indices: np.ndarray, labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """`per_class` random examples of every class among `indices` (few-shot training sets)."""
    labels = np.asarray(labels)
    chosen = []
    for cls in np.unique(labels[indices]):
        members = indices[labels[indices] == cls]
        if len(members) < per_class:
            raise ValueError(f"--train-per-class {per_class}: class {int(cls)} has only {len(members)} "
                             f"training examples; allowed range is 1..{len(members)}")
        chosen.extend(rng.choice(members, size=per_class, replace=False).tolist())
    return np.sort(np.asarray(chosen, dtype=np.int64))
