"""The image data sets of the track, each loaded into train / val / test splits.

- `digits`: scikit-learn's 1797 handwritten 8x8 digits (shipped inside the scikit-learn wheel, so
  it works offline). Upsampled to `image_size` (default 16), repeated to 3 channels, normalized
  with the training split's statistics; random-shift augmentation, never flips. A seeded,
  class-stratified split: 25 % test, `val_fraction` of the rest for validation, the remainder (or
  `train_per_class` of it) for training.
- `cifar10`, `cifar100`, `flowers102`: torchvision's readers with download=False; CIFAR is kept in
  memory on the device (random crop with 4-pixel padding + flip), Flowers102 is read from files.
- `imagefolder` (`--data-root` holds `train/`, optionally `val/`, and `test/`, each with one folder
  of images per class) and the reference's named folders `ROOT/<Name>/...` for CUB200, Aircrafts,
  MIT67, Dog120, Flower102. File data sets use the reference transforms: Resize to
  256/224 * image_size, RandomResizedCrop + flip for training, CenterCrop for evaluation,
  ImageNet mean/std.

When a data set has no validation split, `val_fraction` of the training split (stratified, seeded
by `split_seed`) is held out; with `val_fraction=0` there is no validation split. The test split
is only ever evaluated, never used to choose anything.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_count, check_real, check_seed, check_types
from .models import import_torchvision
from .splits import LoaderSplit, TensorAugment, TensorSplit, stratified_split, take_per_class

IMAGE_FOLDER_NAMES = {"cub200": "CUB200", "aircraft": "Aircrafts", "mit67": "MIT67", "dogs": "Dog120",
                      "flower102": "Flower102"}
DATASETS = ("digits", "cifar10", "cifar100", "flowers102", "imagefolder", *IMAGE_FOLDER_NAMES)
DEFAULT_IMAGE_SIZE = {"digits": 16, "cifar10": 32, "cifar100": 32}  # everything else: 224
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_STATS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
               "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}
DIGITS_TEST_FRACTION = 0.25
# The data sets held in memory as one tensor: (examples, stored side, bytes per stored value). Image
# files are read batch by batch, so they hold next to nothing.
IN_MEMORY = {"digits": (1797, 8, 4), "cifar10": (60_000, 32, 1), "cifar100": (60_000, 32, 1)}
# Classes per data set; a folder's are not known before it is read, so ImageNet's 1000 stand in.
NUM_CLASSES = {"digits": 10, "cifar10": 10, "cifar100": 100, "flowers102": 102}
UNKNOWN_CLASSES = 1000


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    data_root: str = "data"
    image_size: int | None = None       # None: the data set's default (digits 16, CIFAR 32, else 224)
    train_per_class: int = 0            # > 0: a few-shot training set of that many examples per class
    val_fraction: float = 0.1           # held out of train where the data set has no val split
    split_seed: int = 0                 # fixes the splits independently of the training seed
    augment: bool = True
    workers: int = 4                    # DataLoader workers for file data sets

    def resolved_image_size(self) -> int:
        return self.image_size or DEFAULT_IMAGE_SIZE.get(self.dataset, 224)

    def memory_bytes(self) -> int:
        """Peak bytes of the images `load_data` holds: the resized set as stored (uint8 CIFAR, float
        digits), plus the float copies of input and output that resizing the whole set makes."""
        if self.dataset not in IN_MEMORY:
            return 0
        count, side, stored = IN_MEMORY[self.dataset]
        size = self.resolved_image_size()
        values = count * 3 * size * size
        resizing = 4 * count * 3 * (side * side + size * size) if size != side else 0
        return values * stored + resizing

    def validate(self) -> None:
        check_types(self)
        if self.dataset not in DATASETS:
            raise ValueError(f"--dataset {self.dataset!r}: allowed are {', '.join(DATASETS)}")
        if self.image_size is not None:
            check_count("--image-size", self.image_size, 4, 1024)
        if not 0 <= self.train_per_class <= 100_000:
            raise ValueError(f"--train-per-class {self.train_per_class}: allowed range is 0..100000 (0 = all)")
        check_real("--val-fraction", self.val_fraction, 0.0, 1.0, open_high=True)
        check_seed("--split-seed", self.split_seed)
        check_count("--workers", self.workers, 0, 64)


@dataclass
class ImageData:
    """The three splits plus what a model needs to know about the images."""

    name: str
    train: TensorSplit | LoaderSplit
    val: TensorSplit | LoaderSplit | None
    test: TensorSplit | LoaderSplit
    num_classes: int
    image_size: int
    in_channels: int = 3

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val) if self.val is not None else 0, "test": len(self.test)}


def load_data(config: DataConfig, device: torch.device | str = "cpu") -> ImageData:
    """Load and split `config.dataset`; a missing or malformed directory raises one ValueError."""
    config.validate()
    if config.dataset == "digits":
        return load_digits(config, device)
    if config.dataset in CIFAR_STATS:
        return load_cifar(config, device)
    if config.dataset == "flowers102":
        return load_flowers102(config, device)
    root = pathlib.Path(config.data_root)
    if config.dataset in IMAGE_FOLDER_NAMES:
        root = root / IMAGE_FOLDER_NAMES[config.dataset]
    return load_image_folder(root, config, device, name=config.dataset)


# ------------------------------------------------------------------------------------------ digits
def digits_images(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as float N x 3 x S x S in [0, 1] (bilinear upsampling) and their labels."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ValueError("--dataset digits needs scikit-learn (it ships the data): pip install scikit-learn") from None
    digits = sklearn_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    if image_size != 8:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return images.clamp_(0.0, 1.0).expand(-1, 3, -1, -1).contiguous(), torch.from_numpy(digits.target).long()


def split_digits(labels: np.ndarray, config: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified (train, val, test) indices; see the module docstring."""
    rng = np.random.default_rng(config.split_seed)
    test, rest = stratified_split(labels, fractions=[DIGITS_TEST_FRACTION], rng=rng)
    val, train = stratified_split(labels[rest], fractions=[config.val_fraction], rng=rng)
    val, train = rest[val], rest[train]
    if config.train_per_class:
        train = take_per_class(train, labels, config.train_per_class, rng)
    return train, val, test


def load_digits(config: DataConfig, device: torch.device | str = "cpu") -> ImageData:
    size = config.resolved_image_size()
    images, labels = digits_images(size)
    train, val, test = split_digits(labels.numpy(), config)
    mean = [float(images[train].mean())] * 3
    std = [float(images[train].std())] * 3
    shift = max(1, size // 8) if config.augment else 0  # one source pixel of the 8x8 original

    def split(index: np.ndarray, augment: TensorAugment = TensorAugment()) -> TensorSplit:
        index = torch.from_numpy(index)
        return TensorSplit(images[index], labels[index], mean=mean, std=std, augment=augment, device=device)

    return ImageData("digits", split(train, TensorAugment(shift=shift)), split(val) if len(val) else None,
                     split(test), num_classes=10, image_size=size)


# ------------------------------------------------------------------------------------------- CIFAR
def _missing(dataset: str, root: pathlib.Path, layout: str, detail: object) -> ValueError:
    return ValueError(f"--dataset {dataset}: no usable data under --data-root {root} ({detail}); "
                      f"expected layout: {layout} (nothing is downloaded)")


def _train_val_indices(labels: np.ndarray, config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(config.split_seed)
    val, train = stratified_split(labels, fractions=[config.val_fraction], rng=rng)
    if config.train_per_class:
        train = take_per_class(train, labels, config.train_per_class, rng)
    return train, val


def load_cifar(config: DataConfig, device: torch.device | str = "cpu") -> ImageData:
    datasets = import_torchvision(f"--dataset {config.dataset}").datasets
    root = pathlib.Path(config.data_root)
    folder = "cifar-10-batches-py" if config.dataset == "cifar10" else "cifar-100-python"
    reader = datasets.CIFAR10 if config.dataset == "cifar10" else datasets.CIFAR100
    try:
        train_set = reader(str(root), train=True, download=False)
        test_set = reader(str(root), train=False, download=False)
    except (RuntimeError, OSError) as error:
        raise _missing(config.dataset, root, f"{root}/{folder}/ (the python pickles)", error) from None
    size = config.resolved_image_size()

    def tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(np.asarray(dataset.data)).permute(0, 3, 1, 2).contiguous()  # uint8
        if size != images.shape[-1]:
            images = F.interpolate(images.float(), size=(size, size), mode="bilinear",
                                   align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
        return images, torch.as_tensor(dataset.targets, dtype=torch.long)

    train_images, train_labels = tensors(train_set)
    test_images, test_labels = tensors(test_set)
    train, val = _train_val_indices(train_labels.numpy(), config)
    mean, std = CIFAR_STATS[config.dataset]
    augment = TensorAugment(shift=size // 8, flip=True) if config.augment else TensorAugment()

    def split(images, labels, index=None, aug=TensorAugment()) -> TensorSplit:
        if index is not None:
            index = torch.from_numpy(index)
            images, labels = images[index], labels[index]
        return TensorSplit(images, labels, mean=mean, std=std, augment=aug, device=device)

    return ImageData(config.dataset, split(train_images, train_labels, train, augment),
                     split(train_images, train_labels, val) if len(val) else None,
                     split(test_images, test_labels), num_classes=len(train_set.classes), image_size=size)


# ------------------------------------------------------------------------------------- image files
def file_transforms(image_size: int, augment: bool):
    """(train, eval) transforms of the reference: resize to a square 256/224 larger, then crop."""
    transforms = import_torchvision("image files").transforms
    resize = transforms.Resize((round(image_size * 256 / 224),) * 2)
    normalize = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    evaluation = transforms.Compose([resize, transforms.CenterCrop(image_size), *normalize])
    if not augment:
        return evaluation, evaluation
    train = transforms.Compose([resize, transforms.RandomResizedCrop(image_size),
                                transforms.RandomHorizontalFlip(), *normalize])
    return train, evaluation


def _loader_split(train_view, eval_view, index, config: DataConfig, device) -> LoaderSplit:
    if index is not None:
        subset = torch.utils.data.Subset
        train_view, eval_view = subset(train_view, index.tolist()), subset(eval_view, index.tolist())
    return LoaderSplit(train_view, eval_view, device=device, workers=config.workers)


def load_flowers102(config: DataConfig, device: torch.device | str = "cpu") -> ImageData:
    datasets = import_torchvision("--dataset flowers102").datasets
    root = pathlib.Path(config.data_root)
    size = config.resolved_image_size()
    train_tf, eval_tf = file_transforms(size, config.augment)
    try:
        views = {split: (datasets.Flowers102(str(root), split=split, transform=train_tf, download=False),
                         datasets.Flowers102(str(root), split=split, transform=eval_tf, download=False))
                 for split in ("train", "val", "test")}
    except (RuntimeError, OSError) as error:
        raise _missing("flowers102", root, f"{root}/flowers-102/{{jpg/, imagelabels.mat, setid.mat}}", error) from None
    train_index = None
    if config.train_per_class:
        labels = np.asarray(views["train"][1]._labels)
        train_index = take_per_class(np.arange(len(labels)), labels, config.train_per_class,
                                     np.random.default_rng(config.split_seed))
    return ImageData("flowers102", _loader_split(*views["train"], train_index, config, device),
                     _loader_split(*views["val"], None, config, device),
                     _loader_split(*views["test"], None, config, device), num_classes=102, image_size=size)


def check_image_folder(root: pathlib.Path) -> dict[str, list[str]]:
    """Class names per split of an ImageFolder tree, or one ValueError saying what is wrong."""
    layout = f"{root}/{{train,val,test}}/<class>/<image>{{{','.join(IMAGE_EXTENSIONS[:3])},...}} (val optional)"

    def fail(detail: str) -> ValueError:
        return ValueError(f"dataset directory {root} is missing or malformed: {detail}; expected layout: {layout}")

    if not root.is_dir():
        raise fail("it is not a directory")
    classes: dict[str, list[str]] = {}
    for split in ("train", "val", "test"):
        folder = root / split
        if not folder.is_dir():
            if split == "val":
                continue
            raise fail(f"no '{split}' folder")
        names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
        if len(names) < 2:
            raise fail(f"'{split}' holds {len(names)} class folders, need at least 2")
        for name in names:
            if not any(f.suffix.lower() in IMAGE_EXTENSIONS for f in (folder / name).iterdir()):
                raise fail(f"class folder {split}/{name} holds no image")
        classes[split] = names
    for split, names in classes.items():
        if names != classes["train"]:
            raise fail(f"'{split}' has classes {names[:5]}... that differ from train's {classes['train'][:5]}...")
    return classes


def load_image_folder(root: str | os.PathLike, config: DataConfig, device: torch.device | str = "cpu", *,
                      name: str = "imagefolder") -> ImageData:
    root = pathlib.Path(root)
    classes = check_image_folder(root)
    datasets = import_torchvision(f"--dataset {name}").datasets
    size = config.resolved_image_size()
    train_tf, eval_tf = file_transforms(size, config.augment)

    def views(split: str):
        return (datasets.ImageFolder(str(root / split), transform=train_tf),
                datasets.ImageFolder(str(root / split), transform=eval_tf))

    train_views = views("train")
    labels = np.asarray(train_views[1].targets)
    if "val" in classes:
        rng = np.random.default_rng(config.split_seed)
        train_index = (take_per_class(np.arange(len(labels)), labels, config.train_per_class, rng)
                       if config.train_per_class else None)
        val = _loader_split(*views("val"), None, config, device)
    else:
        train_index, val_index = _train_val_indices(labels, config)
        val = _loader_split(*train_views, val_index, config, device) if len(val_index) else None
    return ImageData(name, _loader_split(*train_views, train_index, config, device), val,
                     _loader_split(*views("test"), None, config, device), num_classes=len(classes["train"]),
                     image_size=size)
