"""Image classifiers whose layer names a forgetting operator can address.

`build_model` returns torchvision's ResNet18/ResNet50 (names `conv1, bn1, layer1..layer4, fc`, the
names later-layer forgetting uses) or one of two small CPU models with the same naming habit:
`small_cnn` (`layer1..layer3`, `fc`) and `mlp`, the reference's "LeNet" 300-100 MLP (`fc1..fc3`).
torchvision is imported only when a ResNet is asked for, so the small models run without it.

Initialization follows the reference code (generation 0 only): Kaiming-normal (fan_in, ReLU) for
every conv and linear weight, PyTorch's default uniform for linear biases, BatchNorm at weight 1,
bias 0. Every draw uses an explicit `torch.Generator`, so a seed fixes the initial weights.
Re-initialization during forgetting is the forgetting operator's business (the modules' own
`reset_parameters()`), which, as in the reference, draws about 2.4x smaller weights.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from .checks import check_count

ARCHITECTURES = ("small_cnn", "mlp", "resnet18", "resnet50")
STEMS = ("imagenet", "cifar")
TORCHVISION_HINT = "pip install emergent-frl[vision]"

# The layer later-layer forgetting starts from when none is named (the reference's `layer4`).
DEFAULT_FORGET_FROM = {"small_cnn": "layer3", "mlp": "fc2", "resnet18": "layer4", "resnet50": "layer4"}
DEFAULT_WIDTH = {"small_cnn": 32, "mlp": 300}


def import_torchvision(what: str):
    """torchvision, or one clear error naming the extra that installs it."""
    try:
        import torchvision
    except ImportError as error:  # also covers a torchvision built for another torch
        raise ValueError(f"{what} needs torchvision, which is not importable ({error}); "
                         f"install it with: {TORCHVISION_HINT}") from None
    return torchvision


class ConvBlock(nn.Sequential):
    """conv 3x3 -> BatchNorm -> ReLU (-> 2x2 max-pool): one addressable layer of `SmallCNN`."""

    def __init__(self, in_channels: int, out_channels: int, *, pool: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        if pool:
            self.pool = nn.MaxPool2d(2)


class SmallCNN(nn.Module):
    """Three conv blocks (width w, 2w, 4w), global average pool, `fc`: a ResNet-shaped toy for CPUs."""

    def __init__(self, num_classes: int, *, in_channels: int = 3, width: int = 32):
        super().__init__()
        self.layer1 = ConvBlock(in_channels, width, pool=True)
        self.layer2 = ConvBlock(width, 2 * width, pool=True)
        self.layer3 = ConvBlock(2 * width, 4 * width, pool=False)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MLP(nn.Module):
    """The reference's targeted-forgetting "LeNet": flatten -> width -> width/3 -> classes, ReLU."""

    def __init__(self, num_classes: int, *, in_features: int, width: int = 300):
        super().__init__()
        hidden = max(1, width // 3)
        self.fc1 = nn.Linear(in_features, width)
        self.fc2 = nn.Linear(width, hidden)
        self.fc3 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc3(torch.relu(self.fc2(x)))


def _torchvision_resnet(arch: str, num_classes: int, stem: str, in_channels: int) -> nn.Module:
    models = import_torchvision(f"--arch {arch}").models
    model = getattr(models, arch)(weights=None, num_classes=num_classes)
    if stem == "cifar":
        # Small images: a 3x3 stride-1 stem and no max-pool; same attribute names, same order.
        model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    return model


def build_model(arch: str, num_classes: int, *, image_size: int = 32, in_channels: int = 3,
                stem: Literal["imagenet", "cifar"] = "imagenet", width: int | None = None,
                generator: torch.Generator | None = None) -> nn.Module:
    """A freshly initialized classifier; `generator` fixes the initial weights."""
    validate_model_args(arch, stem=stem, width=width, image_size=image_size)
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: need at least 2 classes")
    model = construct_model(arch, num_classes, image_size=image_size, in_channels=in_channels, stem=stem, width=width)
    reference_init(model, generator)
    return model


def construct_model(arch: str, num_classes: int, *, image_size: int, in_channels: int, stem: str,
                    width: int | None) -> nn.Module:
    """The network with its modules' default initialization; under `torch.device("meta")` it
    allocates nothing, which is how the memory estimate counts a model before building it."""
    if arch == "small_cnn":
        return SmallCNN(num_classes, in_channels=in_channels, width=width or DEFAULT_WIDTH[arch])
    if arch == "mlp":
        return MLP(num_classes, in_features=in_channels * image_size * image_size, width=width or DEFAULT_WIDTH[arch])
    return _torchvision_resnet(arch, num_classes, stem, in_channels)


def validate_model_args(arch: str, *, stem: str = "imagenet", width: int | None = None, image_size: int = 32) -> None:
    if arch not in ARCHITECTURES:
        raise ValueError(f"--arch {arch!r}: allowed are {', '.join(ARCHITECTURES)}")
    if stem not in STEMS:
        raise ValueError(f"--stem {stem!r}: allowed are {', '.join(STEMS)}")
    if width is not None:
        if arch not in DEFAULT_WIDTH:
            raise ValueError(f"--width applies to {', '.join(DEFAULT_WIDTH)} only (torchvision's ResNet "
                             f"constructor fixes the widths); got --width {width} with --arch {arch}")
        check_count("--width", width, 1, 4096)
    if stem == "cifar" and arch not in ("resnet18", "resnet50"):
        raise ValueError(f"--stem cifar applies to the ResNets only, not --arch {arch}")
    check_count("--image-size", image_size, 4, 1024)
    if arch.startswith("resnet"):
        import_torchvision(f"--arch {arch}")


@torch.no_grad()
def reference_init(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Generation-0 init of the reference code, drawn from `generator` (see module docstring)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
            if module.bias is not None:
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            module.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1: nothing random
