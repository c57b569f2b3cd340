"""DDP on CPU: two gloo processes split each batch; metrics are reduced over both."""

import json

import pytest
import torch
from torch import nn

from kdrun.data import TensorDataModule
from kdrun.data.datamodule import ShardedBatches
from kdrun.measure import accuracy
from kdrun.strategies.scratch import Scratch
from kdrun.training.fit import fit
from tests.conftest import make_cfg, run_kdrun

DDP = ["trainer.strategy=ddp", "trainer.devices=2"]


def test_processes_split_every_batch_and_take_the_same_number_of_steps(tiny_data):
    tiny_data.batch_size = 7  # 40 samples: five batches of 7 and a last one of 5
    whole = list(tiny_data.loader("train", shuffle=True).sampler)
    shares = []
    for rank in (0, 1):
        loader = tiny_data.loader("train", shuffle=True, shard=(rank, 2))
        assert isinstance(loader.sampler, ShardedBatches)
        shares.append(list(loader.sampler))
        assert len(loader.sampler) == len(shares[-1]) == len(whole)
    for batch, first, second in zip(whole, *shares, strict=True):
        assert sorted(first + second) == sorted(batch) and not set(first) & set(second)
    tiny_data.batch_size = 13  # a last batch of one sample cannot be split in two: left out
    assert [len(list(tiny_data.loader("train", shuffle=True, shard=(r, 2)).sampler)) for r in (0, 1)] == [
        3,
        3,
    ]


def test_ddp_fit_reduces_epoch_metrics_over_both_processes(tmp_path):
    gen = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, 1, 4, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen)

    data = TensorDataModule(split(96), split(50), split(10), list("abc"), batch_size=16, fingerprint="d")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    # lr=0: the weights stay put, so the epoch's train accuracy is the model's on the whole split.
    cfg = make_cfg(*DDP, "optim.optimizer.lr=0", "optim.schedule=constant", "recalibrate_bn=false")
    metrics = fit(Scratch(model), data, cfg, epochs=1, seed=0, log_dir=tmp_path, label="ddp")

    model.eval()
    whole = accuracy(model, data.loader("train"), 3)["top1"]
    share = accuracy(model, data.loader("train", shuffle=True, shard=(0, 2)), 3)["top1"]
    assert share != pytest.approx(whole)  # so a metric of one process alone would show
    assert metrics["train/acc"] == pytest.approx(whole)
    assert metrics["val/acc"] == pytest.approx(accuracy(model, data.loader("val"), 3)["top1"])


@pytest.mark.slow  # three phases, each spawning two workers: about a minute on two cores
def test_kdrun_train_with_two_ddp_processes_writes_the_usual_results(tmp_path):
    args = ["train", "debug=smoke", "threads=1", "dataset.limit=128", "measure.batch_sizes=[1]"]
    run = run_kdrun([*args, *DDP, "hydra.run.dir=run"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert results["status"] == "ok"
    assert results["config"]["trainer"]["strategy"] == "ddp"
    for role in ("teacher", "baseline", "student"):
        assert 0 < results[role]["top1"] <= 1 and results[role]["source"] == "trained"
    assert results["data"]["test"] == 1000  # evaluated once, in the main process, on the whole split
    assert run.stdout.count("[student] epoch 1/1") == 1  # one line, not one per process
