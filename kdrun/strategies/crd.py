"""Contrastive representation distillation (Tian et al. 2020), as RepDistiller implements it.

Embedding heads (``Linear`` + L2 normalisation) map the penultimate features of the student and
of the frozen teacher to ``feat_dim``. Two memory banks hold one embedding per training sample,
one per side, updated with momentum. Each step scores a sample's embedding against the other
side's bank entry for the same sample (the positive) and ``nce_k`` entries of samples of other
classes (the negatives), and the NCE loss of both directions is the ``crd`` term.
"""

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from kdrun.config.schema import MISSING, number
from kdrun.errors import KdrunConfigError
from kdrun.losses import contrast_nce_loss, kd_loss
from kdrun.models.build import build
from kdrun.models.sections import display_name, is_ensemble
from kdrun.models.taps import classifier_name, forward_with_penultimate
from kdrun.strategies.base import Options, Strategy, pretrained_teacher, register


@dataclass
class CRDOptions(Options):
    feat_dim: int = number(MISSING, ge=1, integer=True)  # embedding size of both heads and banks
    nce_k: int = number(MISSING, ge=1, integer=True)  # negatives per sample
    nce_t: float = number(MISSING, gt=0)  # temperature of the scores exp(<v, m> / nce_t)
    nce_m: float = number(MISSING, ge=0, le=1)  # momentum of the bank update
    beta: float = number(MISSING, ge=0)  # weight of the crd term
    ce_weight: float = number(MISSING, ge=0)
    kd_weight: float = number(MISSING, ge=0)  # weight of Hinton's soft term at T (0: CRD alone)


class Embed(nn.Module):
    """(B, D_in) features -> (B, feat_dim) unit vectors: a linear map, then L2 normalisation."""

    def __init__(self, dim_in: int, feat_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, feat_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x), dim=1)


class ContrastMemory(nn.Module):
    """The two banks (N, feat_dim) and the negative sampler over the training labels.

    Negatives of a sample are drawn uniformly, with replacement, from the training samples of
    the other classes (RepDistiller's ``exact`` mode draws them without replacement when there
    are enough). Scores are normalised by a constant ``Z`` per bank, set on the first step to
    ``N x`` the mean score, as in the reference.
    """

    def __init__(self, labels: torch.Tensor, feat_dim: int, nce_k: int, nce_t: float, nce_m: float) -> None:
        super().__init__()
        n = len(labels)
        self.nce_k, self.nce_t, self.nce_m = nce_k, nce_t, nce_m
        bound = 1.0 / (feat_dim / 3) ** 0.5  # the reference's uniform initialisation
        self.register_buffer("student_bank", torch.rand(n, feat_dim) * 2 * bound - bound)
        self.register_buffer("teacher_bank", torch.rand(n, feat_dim) * 2 * bound - bound)
        self.register_buffer("z", torch.full((2,), -1.0))  # (student side, teacher side); < 0: unset
        labels = labels.long()
        counts = torch.bincount(labels)
        # Samples sorted by class: the other classes' samples of class c are this order minus
        # one contiguous block [start[c], start[c] + count[c]).
        self.register_buffer("labels", labels, persistent=False)
        self.register_buffer("order", torch.argsort(labels, stable=True), persistent=False)
        self.register_buffer("counts", counts, persistent=False)
        self.register_buffer("starts", torch.cumsum(counts, 0) - counts, persistent=False)

    def sample(self, index: torch.Tensor) -> torch.Tensor:
        """(B,) sample indices -> (B, 1 + nce_k): the sample itself, then its negatives."""
        c = self.labels[index]
        others = (len(self.labels) - self.counts[c]).unsqueeze(1)
        u = (torch.rand(len(index), self.nce_k, device=index.device) * others).long().clamp_max(others - 1)
        u = u + (u >= self.starts[c].unsqueeze(1)) * self.counts[c].unsqueeze(1)
        return torch.cat([index.unsqueeze(1), self.order[u]], dim=1)

    def scores(self, v: torch.Tensor, bank: torch.Tensor, sample: torch.Tensor, side: int) -> torch.Tensor:
        """(B, D) embeddings against the (detached) bank rows ``sample`` -> (B, 1 + K) scores.

        One (B, N) product with the whole bank, then a gather: the same numbers as gathering a
        (B, 1 + K, D) block of rows, in N x B floats instead of B x (1 + K) x D.
        """
        scores = torch.exp((v @ bank.t()).gather(1, sample) / self.nce_t)
        z = self.z[side]
        z = torch.where(z < 0, scores.detach().mean() * len(bank), z)  # set once; no host sync
        self.z[side] = z
        return scores / z

    @torch.no_grad()
    def updated(self, bank: torch.Tensor, index: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``bank`` with the rows ``index`` moved towards ``v`` with momentum and renormalised.

        A new tensor, not an in-place write: this step's scores still need the old bank for the
        backward pass.
        """
        rows = bank[index] * self.nce_m + v.to(bank.dtype) * (1 - self.nce_m)
        return bank.index_copy(0, index, F.normalize(rows, dim=1))


@register("crd")
class CRD(Strategy):
    """Terms ``hard``, ``soft`` and ``crd``; weights ``strategy.ce_weight``, ``strategy.kd_weight``
    and ``strategy.beta``; temperature ``T`` for the soft term. (``alpha`` is not used.)

    The embedding heads are trained with the student but belong to the strategy: they are not
    saved, measured or exported. The teacher runs on every step (its features are not cached).
    """

    options = CRDOptions
    caches_logits = False  # a step needs the teacher's penultimate features

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        labels: torch.Tensor,
        example: torch.Tensor,
        T: float,
        feat_dim: int,
        nce_k: int,
        nce_t: float,
        nce_m: float,
        beta: float,
        ce_weight: float,
        kd_weight: float,
    ) -> None:
        super().__init__(student, teacher)
        self.T, self.beta, self.ce_weight, self.kd_weight = T, beta, ce_weight, kd_weight
        was = student.training
        with torch.no_grad():
            _, f_s = forward_with_penultimate(student.eval(), example)
            _, f_t = forward_with_penultimate(teacher, example)
        student.train(was)
        self.embed_student = Embed(f_s.shape[1], feat_dim)
        self.embed_teacher = Embed(f_t.shape[1], feat_dim)
        self.memory = ContrastMemory(labels, feat_dim, nce_k, nce_t, nce_m)

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        if is_ensemble(cfg.teacher):
            raise KdrunConfigError("teacher", "ensemble", "strategy=crd reads one teacher's features")
        devices = cfg.trainer.get("devices", 1)
        if isinstance(devices, int) and devices > 1:  # another value: refused by the trainer's checks
            raise KdrunConfigError(
                "trainer.devices",
                devices,
                "1 with strategy=crd (its memory banks live in one process)",
            )
        return {}

    @classmethod
    def preflight(cls, cfg: DictConfig, data) -> None:
        for key in ("teacher", "student"):
            if classifier_name(build(cfg[key], data)) is None:
                raise KdrunConfigError(
                    f"{key}.name",
                    display_name(cfg[key]),
                    "strategy=crd embeds the input of the model's last nn.Linear; this model has none",
                )
        labels = data.splits["train"][1]
        if len(torch.unique(labels)) < 2:
            raise KdrunConfigError("dataset", cfg.dataset.name, "strategy=crd needs two classes or more")

    @classmethod
    def build(cls, assets, student: nn.Module) -> "CRD":
        s, cfg = assets.cfg.strategy, assets.cfg
        x, labels = assets.data.splits["train"]
        if cfg.kd.student_limit is not None:  # the student trains on the first N samples only
            labels = labels[: int(cfg.kd.student_limit)]
        teacher = assets.teacher()
        strategy = cls(
            student,
            teacher.model.eval(),
            labels=labels,
            example=x[:2],
            T=assets.T,
            feat_dim=int(s.feat_dim),
            nce_k=int(s.nce_k),
            nce_t=float(s.nce_t),
            nce_m=float(s.nce_m),
            beta=float(s.beta),
            ce_weight=float(s.ce_weight),
            kd_weight=float(s.kd_weight),
        )
        return pretrained_teacher(strategy, assets)

    def cache_teacher_logits(self, batches) -> None:
        """Nothing to cache: the teacher's penultimate features are needed on every step."""

    @property
    def weights(self) -> dict[str, float]:
        return {"hard": self.ce_weight, "soft": self.kd_weight, "crd": self.beta}

    def loss_terms(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            teacher_logits, f_t = forward_with_penultimate(self.teacher, x)
        logits, f_s = forward_with_penultimate(self.student, x)
        memory = self.memory
        device = x.device.type
        # exp(<v, m> / 0.07) needs float32: no autocast here (bf16 training keeps it elsewhere).
        amp = torch.amp.is_autocast_available(device)
        with torch.autocast(device, enabled=False) if amp else nullcontext():
            v_s = self.embed_student(f_s.float())
            v_t = self.embed_teacher(f_t.float())
            sample = memory.sample(index)
            # Each side's embedding against the other side's bank, as in the reference.
            n = len(memory.labels)
            student_side = contrast_nce_loss(memory.scores(v_s, memory.teacher_bank, sample, 0), n)
            teacher_side = contrast_nce_loss(memory.scores(v_t, memory.student_bank, sample, 1), n)
            memory.student_bank = memory.updated(memory.student_bank, index, v_s)
            memory.teacher_bank = memory.updated(memory.teacher_bank, index, v_t)
        return logits, {
            "hard": F.cross_entropy(logits, y),
            "soft": kd_loss(*self.soft_logits(logits, teacher_logits), self.T),
            "crd": student_side + teacher_side,
        }

    def hparams(self) -> dict:
        m = self.memory
        return {**super().hparams(), "T": self.T, "nce_k": m.nce_k, "nce_t": m.nce_t, "nce_m": m.nce_m}
