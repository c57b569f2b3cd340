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


def test_a_streamed_set_takes_the_distributed_sampler_path(tiny_data):
    from types import SimpleNamespace

    import numpy as np
    from torch.utils.data import DistributedSampler

    from kdrun.data.arrays import ArrayImages

    pixels = np.random.default_rng(0).integers(0, 256, (40, 1, 4, 4), dtype=np.uint8)
    images = ArrayImages(pixels, [], 1, 4)
    images.mean, images.std = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    labels = torch.arange(40) % 4
    data = TensorDataModule((images, labels), (images, labels), (images, labels), list("abcd"), 8, "s")
    data.normalization, data.num_workers = {"mean": [0.0], "std": [1.0]}, 0
    shares = []
    for rank in (0, 1):
        data.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        loader = data.train_dataloader()
        assert isinstance(loader.batch_sampler.sampler, DistributedSampler)  # Lightning sets its epoch
        batches = [index for _, _, index in loader]
        assert [len(b) for b in batches] == [4] * 5  # 8 a step over both processes
        shares.append(torch.cat(batches))
    assert sorted(torch.cat(shares).tolist()) == list(range(40))
    loader.batch_sampler.sampler.set_epoch(1)
    assert not torch.equal(torch.cat([index for _, _, index in loader]), shares[1])  # a new order
    tiny_data.trainer = SimpleNamespace(world_size=2, global_rank=0)
    assert isinstance(tiny_data.train_dataloader().sampler, ShardedBatches)  # in memory: as before


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


@pytest.mark.slow  # two spawned workers
def test_ddp_fit_on_a_memory_mapped_streamed_set_sees_every_training_sample(tmp_path):
    import numpy as np

    from kdrun.data.arrays import ArrayImages

    path = tmp_path / "pixels.u8"
    rng = np.random.default_rng(0)
    mapped = np.memmap(path, np.uint8, "w+", shape=(96, 1, 4, 4))
    mapped[:] = rng.integers(0, 256, mapped.shape, dtype=np.uint8)
    mapped.flush()
    images = ArrayImages(np.memmap(path, np.uint8, "r", shape=(96, 1, 4, 4)), [path], 1, 4)
    images.mean, images.std = torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.3)
    labels = torch.as_tensor(rng.integers(0, 3, 96))
    data = TensorDataModule((images, labels), (images, labels), (images, labels), list("abc"), 16, "m")
    data.normalization, data.num_workers = {"mean": [0.5], "std": [0.3]}, 0
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    cfg = make_cfg(*DDP, "optim.optimizer.lr=0", "optim.schedule=constant", "recalibrate_bn=false")
    metrics = fit(Scratch(model), data, cfg, epochs=1, seed=0, log_dir=tmp_path, label="ddp")
    assert metrics["train/acc"] == pytest.approx(accuracy(model.eval(), data.loader("train"), 3)["top1"])


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


def test_launched_processes_come_from_torchrun_or_srun_and_train_cached_phases_alone(monkeypatch):
    from lightning.pytorch.strategies import DDPStrategy

    from kdrun.runtime import nodes
    from kdrun.training.fit import trainer_args

    for key in ("WORLD_SIZE", "RANK", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    assert not nodes.launched() and nodes.is_main()
    assert nodes.rank_zero_first(lambda: "built", lambda: "read") == "built"
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert not nodes.launched() and nodes.is_main()  # a batch script's own shell, outside srun
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert nodes.launched() and nodes.rank() == 1 and not nodes.is_main()
    trainer = make_cfg("trainer.accelerator=cpu", "trainer.num_nodes=4").trainer
    args = trainer_args(trainer)
    assert isinstance(args["strategy"], DDPStrategy) and args["strategy"]._start_method != "spawn"
    assert args["num_nodes"] == 4 and args["use_distributed_sampler"] is False
    with nodes.alone():  # rank 0 training a cache entry by itself
        assert (trainer_args(trainer)["strategy"], trainer_args(trainer)["num_nodes"]) == ("auto", 1)
        assert not nodes.synced()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two torchrun "nodes" on localhost, each running the whole pipeline
def test_one_run_across_two_nodes_under_torchrun(tmp_path):
    import os
    import subprocess
    import sys

    args = [
        "debug=smoke",
        "threads=1",
        "dataset.limit=128",
        "measure.batch_sizes=[1]",
        "trainer.accelerator=cpu",
    ]
    shared = f"paths.output_root={tmp_path / 'shared'}"  # the cache every node sees
    rendezvous = [
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                *rendezvous,
                "-m",
                "kdrun",
                "train",
                *args,
                shared,
                "trainer.num_nodes=2",
                f"hydra.run.dir={tmp_path / f'node{i}'}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-3000:] for log in logs)
    written = [
        tmp_path / f"node{i}" / "results.json"
        for i in range(2)
        if (tmp_path / f"node{i}" / "results.json").exists()
    ]
    assert len(written) == 1  # evaluation and results.json once, on rank 0
    two_nodes = json.loads(written[0].read_text())
    assert sum("teacher: training cnn" in log for log in logs) == 1  # rank 0 alone; the other read the cache
    assert sum("reusing cached cnn" in log for log in logs) == 1
    one = run_kdrun(
        ["train", *args, f"paths.output_root={tmp_path / 'alone'}", "hydra.run.dir=alone"], tmp_path
    )
    assert one.returncode == 0, one.stderr[-3000:]
    alone = json.loads((tmp_path / "alone" / "results.json").read_text())

    def schema(value):
        return {k: schema(v) for k, v in value.items()} if isinstance(value, dict) else type(value).__name__

    for section in ("teacher", "baseline", "student", "data", "deltas", "diagnostics"):
        assert schema(two_nodes[section]) == schema(alone[section]), section
    assert set(two_nodes) == set(alone) and two_nodes["status"] == "ok"
    assert two_nodes["config"]["trainer"]["num_nodes"] == 2
