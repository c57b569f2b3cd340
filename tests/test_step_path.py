"""What a training step logs and checks, against a hand-written loop over the same batches.

The step path is built for speed (batches read without a DataLoader, train/acc counted at the
epoch's end, non-finite losses checked on logged steps): these tests pin what it must still mean.
"""

import copy
import csv
import itertools

import pytest
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from kdrun.data.datamodule import IndexedTensors
from kdrun.strategies import STRATEGIES
from kdrun.training.fit import fit
from kdrun.training.module import NonFiniteLossError
from tests.conftest import make_cfg

EPOCHS, STEPS = 2, 5  # tiny_data: 40 samples, batch 8


def _vanilla(student: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Linear(16, 4))
    return STRATEGIES["vanilla"](student, teacher, T=4.0, alpha=0.9)


def _hand_loop(strategy: nn.Module, data, lr: float) -> tuple[dict[int, dict[str, float]], list[float]]:
    """Each step's loss terms (before its update) and each epoch's training accuracy: Adam with a
    per-step cosine decay over the same batches (the loader's generator, seeded as ``fit`` seeds it)."""
    optimizer = torch.optim.Adam(strategy.student.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS * STEPS)
    data.shuffle_seed = 0
    loader = data.loader("train", shuffle=True)
    steps, accuracy = {}, []
    for _ in range(EPOCHS):
        correct = 0
        # Lightning stops after the epoch's last batch without asking the sampler for more.
        for x, y, index in itertools.islice(loader, STEPS):
            logits, terms = strategy.loss_terms(x, y, index)
            loss = sum(weight * terms[name] for name, weight in strategy.weights.items())
            steps[len(steps)] = {"train/loss": float(loss.detach())} | {
                f"train/loss_{k}": float(v.detach()) for k, v in terms.items()
            }
            correct += int((logits.argmax(-1) == y).sum())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        accuracy.append(correct / len(data.splits["train"][1]))
    return steps, accuracy


def test_logged_step_losses_and_train_acc_are_those_of_a_hand_written_loop(tiny_data, tmp_path):
    """Logged step values are that step's losses (not a mean over steps); train/acc is the
    epoch's fraction of correct predictions and train/loss_epoch its mean loss; metrics.csv has
    exactly these columns."""
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    replica = _vanilla(copy.deepcopy(student))
    cfg = make_cfg("trainer.log_every_n_steps=2")
    fit(_vanilla(student), tiny_data, cfg, epochs=EPOCHS, seed=0, log_dir=tmp_path, label="t")
    steps, accuracy = _hand_loop(replica, tiny_data, float(cfg.optim.optimizer.lr))

    with (tmp_path / "metrics.csv").open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == [
        "step", "epoch", "train/acc", "train/loss", "train/loss_epoch", "train/loss_hard", "train/loss_soft",
        "val/acc", "val/loss",
    ]  # fmt: skip
    logged = [row for row in rows if row["train/loss"]]
    assert [int(row["step"]) for row in logged] == [1, 3, 5, 7, 9]  # every 2nd step, across epochs
    for row in logged:
        expected = steps[int(row["step"])]
        assert {k: float(row[k]) for k in expected} == pytest.approx(expected, rel=1e-6, abs=1e-7)
    epochs = [float(row["train/acc"]) for row in rows if row["train/acc"]]
    assert epochs == pytest.approx(accuracy, abs=1e-7)
    means = [sum(steps[e * STEPS + i]["train/loss"] for i in range(STEPS)) / STEPS for e in range(EPOCHS)]
    assert [float(row["train/loss_epoch"]) for row in rows if row["train/loss_epoch"]] == pytest.approx(means)


def test_a_non_finite_loss_between_logged_steps_names_its_own_step(tiny_data, tmp_path):
    """Losses are checked on logged steps and at the epoch's end, each check naming the first
    non-finite step since the last one: here step 2 of 5, no logged step before the epoch's end."""
    tiny_data.shuffle_seed = 0
    order = [index.tolist() for _, _, index in tiny_data.loader("train", shuffle=True)]
    bad_step = 2
    tiny_data.splits["train"][0][order[bad_step][0]] = float("nan")  # one image of that step's batch
    torch.manual_seed(0)
    strategy = _vanilla(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)))
    with pytest.raises(
        NonFiniteLossError, match=rf"at step {bad_step} \(epoch 0\); non-finite terms: train/loss_soft"
    ):
        fit(strategy, tiny_data, make_cfg(), epochs=1, seed=0, log_dir=tmp_path, label="t")


def test_in_memory_batches_are_those_of_a_dataloader_over_the_same_sampler(tiny_data):
    """The same batches in the same order, epoch after epoch, from the same generator draws."""
    tiny_data.batch_size = 7  # a last, smaller batch
    tiny_data.shuffle_seed = 3
    fast = tiny_data.loader("train", shuffle=True)
    x, y = tiny_data.splits["train"]
    sampler = BatchSampler(RandomSampler(x, generator=torch.Generator().manual_seed(3)), 7, drop_last=False)
    reference = DataLoader(IndexedTensors(x, y), sampler=sampler, batch_size=None)
    for _ in range(2):
        pairs = list(zip(fast, reference, strict=True))
        assert len(pairs) == len(fast) == 6
        for ours, theirs in pairs:
            assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_in_memory_batches_leave_the_global_rng_where_a_dataloader_leaves_it(tiny_data):
    """Dropout, batch augmentation and CRD draw from the global RNG after each epoch's loader is
    made: iterating our batches draws what a DataLoader's iterator draws, and a probe that only
    asks for an iterator (as Lightning does of a loader that is not a DataLoader) draws nothing."""
    x, y = tiny_data.splits["train"]
    reference = DataLoader(
        IndexedTensors(x, y), sampler=BatchSampler(range(len(y)), 8, False), batch_size=None
    )
    states = []
    for loader in (tiny_data.loader("train"), reference):
        torch.manual_seed(5)
        list(loader)
        list(loader)
        states.append(torch.get_rng_state())
    assert torch.equal(*states)
    torch.manual_seed(5)
    iter(tiny_data.loader("train"))
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(5).get_state())


def test_a_fit_skips_filling_new_tensors_and_restores_the_setting(tiny_data, tmp_path):
    """Deterministic algorithms without NaN-filled fresh tensors during the fit (documented by
    PyTorch as still deterministic); the caller's setting afterwards."""
    seen = []
    torch.manual_seed(0)
    strategy = _vanilla(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)))
    loss_terms = strategy.loss_terms

    def recorded(*batch: torch.Tensor):
        seen.append(torch.utils.deterministic.fill_uninitialized_memory)
        return loss_terms(*batch)

    strategy.loss_terms = recorded
    fit(strategy, tiny_data, make_cfg(), epochs=1, seed=0, log_dir=tmp_path, label="t")
    assert seen == [False] * STEPS
    assert (
        torch.utils.deterministic.fill_uninitialized_memory and torch.are_deterministic_algorithms_enabled()
    )
