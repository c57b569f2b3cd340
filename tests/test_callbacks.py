"""BatchNorm re-estimation: the fix for eval-mode accuracy at chance after short training."""

import torch
from torch import nn

from kdrun.training.callbacks import recalibrate_batchnorm


def test_recalibration_replaces_lagging_running_statistics_with_the_data_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.01))
    batches = [(torch.randn(16, 1, 8, 8) * 3 + 5,) for _ in range(4)]
    model.train()
    with torch.no_grad():
        model(batches[0][0])  # one short "training" step: momentum 0.01 barely moves the stats
        features = model[0](torch.cat([b[0] for b in batches]))
    true_mean = features.mean(dim=(0, 2, 3))
    assert not torch.allclose(model[1].running_mean, true_mean, atol=0.1)
    model.eval()
    recalibrate_batchnorm(model, batches)
    assert torch.allclose(model[1].running_mean, true_mean, atol=1e-4)
    assert model[1].momentum == 0.01 and not model.training  # settings and mode restored
