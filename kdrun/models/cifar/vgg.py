"""VGG with BatchNorm for CIFAR (Simonyan & Zisserman 2015) as RepDistiller and mdistiller define it.

Five conv blocks (``block0``..``block4``) separated by 2x2 max-pools, global average pooling and one
linear ``classifier``; ``vgg8`` is the references' one-conv-per-block variant. The last ReLU of
each block is applied in ``forward`` (the references keep block outputs pre-activation).
"""

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.models.cifar.common import GlobalAvgPool

CONFIGS = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


def _block(widths: list[int], in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        in_channels = width
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    """(B, in_channels, H, W) -> (B, num_classes)."""

    def __init__(self, config: list[list[int]], num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        ins = [in_channels] + [widths[-1] for widths in config[:-1]]
        for i, (widths, cin) in enumerate(zip(config, ins, strict=True)):
            self.add_module(f"block{i}", _block(widths, cin))
        for i in range(4):
            self.add_module(f"pool{i}", nn.MaxPool2d(2, 2))
        self.pool4 = GlobalAvgPool()
        self.classifier = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        x = self.pool0(F.relu(self.block0(x)))
        x = self.pool1(F.relu(self.block1(x)))
        x = self.pool2(F.relu(self.block2(x)))
        x = F.relu(self.block3(x))
        if height == 64:  # as the references: a fourth pool only for 64 px inputs
            x = self.pool3(x)
        x = F.relu(self.block4(x))
        return self.classifier(torch.flatten(self.pool4(x), 1))
