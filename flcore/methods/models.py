"""The networks of the protocols, with the parameter counts they must have.

- ``fmnist_cnn`` (LeadFL reference FashionMNISTCNN, 29,034 parameters).
- ``cifar10_cnn`` (LeadFL reference Cifar10CNN, 551,466 parameters), ending in a
  Softmax by default: the reference trains it with CrossEntropyLoss on the
  softmax output (a double softmax); ``output="logits"`` removes it.
- ``mnist_poisonedfl`` (the PoisonedFL official (Fashion-)MNIST CNN, 139,960
  parameters): conv3x3x30 - pool - conv3x3x50 - pool - FC100 - FC10.
"""
from __future__ import annotations

import torch
from torch import nn

PARAM_COUNTS = {"fmnist_cnn": 29_034, "cifar10_cnn": 551_466, "mnist_poisonedfl": 139_960}


#: Every network computes in the channels-last memory layout (NHWC): its convolution weights
#: are stored channels-last by :func:`build_model` and each forward pass converts its input.
#: oneDNN's convolution, batch-norm and pooling kernels run natively in that layout, without
#: the layout conversions around each NCHW call; measured on one CPU thread (training steps of
#: the paper batch sizes, same run, interleaved): -21 % per Fashion-MNIST step, -17 % CIFAR-10,
#: -24 % PoisonedFL's network, -27 % per 1,000-image evaluation forward. The values are those
#: of the NCHW layout up to float32 rounding (the kernels sum in another order).
MEMORY_FORMAT = torch.channels_last


def _layout(x):
    """``x`` in :data:`MEMORY_FORMAT`; under ``torch.func`` transforms (the batched rows'
    vmap, which does not support memory formats) unchanged."""
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        return x
    return x.contiguous(memory_format=MEMORY_FORMAT)


class FashionMNISTCNN(nn.Module):
    """Conv5x5(1->16) - BN - ReLU - MaxPool2 - Conv5x5(16->32) - BN - ReLU - MaxPool2 - Linear(1568->10)."""

    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.layer2 = nn.Sequential(nn.Conv2d(16, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(7 * 7 * 32, 10)

    def forward(self, x):
        return self.fc(self.layer2(self.layer1(_layout(x))).flatten(1))


def _cifar_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(cout),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(cout),
        nn.MaxPool2d(2))


class Cifar10CNN(nn.Module):
    """Three blocks of [Conv3x3 - ReLU - BN] x2 + MaxPool2 (widths 32, 64, 128),
    Linear(2048->128) (no activation), Linear(128->10), then Softmax unless
    ``output="logits"``."""

    def __init__(self, output: str = "softmax"):
        super().__init__()
        self.features = nn.Sequential(_cifar_block(3, 32), _cifar_block(32, 64), _cifar_block(64, 128))
        self.fc1 = nn.Linear(128 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 10)
        self.softmax = output == "softmax"

    def forward(self, x):
        x = self.fc2(self.fc1(self.features(_layout(x)).flatten(1)))
        return torch.softmax(x, dim=1) if self.softmax else x


class PoisonedFLMnistCNN(nn.Module):
    """The PoisonedFL official (Fashion-)MNIST network: Conv3x3(1->30) - ReLU - MaxPool2
    - Conv3x3(30->50) - ReLU - MaxPool2 - Linear(1250->100) - ReLU - Linear(100->10)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 30, 3), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(30, 50, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Linear(50 * 5 * 5, 100)
        self.fc2 = nn.Linear(100, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.features(_layout(x)).flatten(1))))


def build_model(name: str, output: str = "softmax") -> nn.Module:
    """The network ``name``, its weights in :data:`MEMORY_FORMAT`."""
    if name == "fmnist_cnn":
        return FashionMNISTCNN().to(memory_format=MEMORY_FORMAT)
    if name == "cifar10_cnn":
        return Cifar10CNN(output).to(memory_format=MEMORY_FORMAT)
    if name == "mnist_poisonedfl":
        return PoisonedFLMnistCNN().to(memory_format=MEMORY_FORMAT)
    raise ValueError(f"unknown model {name!r}; valid: {', '.join(PARAM_COUNTS)}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
