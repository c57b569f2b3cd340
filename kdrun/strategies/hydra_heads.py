"""Hydra (Tran et al. 2020): one student body, one light head per ensemble member.

Head i distils member i of ``teacher=ensemble``; the student predicts with the mean of its heads'
probabilities. The heads keep some of the members' diversity that averaging their soft targets
(vanilla KD from the ensemble) throws away. The report gives the mean pairwise disagreement of
the members and of the heads on the test split.
"""

import copy
import itertools
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from kdrun.config.schema import MISSING
from kdrun.errors import KdrunConfigError
from kdrun.losses import kd_loss
from kdrun.models.sections import ensemble_members, is_ensemble
from kdrun.runtime.device import module_device, to_device
from kdrun.strategies.base import Options, Strategy, pretrained_teacher, register


def split_classifier(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """Cut ``model`` before its last ``nn.Linear`` (the classifier): (body, classifier).

    The body is ``model`` itself with that layer replaced by ``nn.Identity``: it outputs features.
    """
    named = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not named:
        raise KdrunConfigError("student.name", type(model).__name__, "has no nn.Linear classifier to split")
    name, classifier = named[-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Identity())
    return model, classifier


def make_head(classifier: nn.Linear, hidden: list[int]) -> nn.Module:
    """A fresh head from the classifier's shape: ``Linear`` or ``[Linear-ReLU] * len(hidden) + Linear``."""
    widths = [classifier.in_features, *hidden, classifier.out_features]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]) if hidden else copy.deepcopy(classifier).apply(_reset)


def _reset(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        module.reset_parameters()


class HydraStudent(nn.Module):
    """A shared body and k heads; ``forward`` = log of the mean of the heads' probabilities."""

    def __init__(self, body: nn.Module, heads: list[nn.Module]) -> None:
        super().__init__()
        self.body = body
        self.heads = nn.ModuleList(heads)

    def heads_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) inputs -> (k, B, C) logits, one slice per head."""
        features = self.body(x)
        return torch.stack([head(features) for head in self.heads])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_of_probabilities(self.heads_logits(x))


def mean_of_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(k, B, C) logits -> (B, C) log of the mean probability: the prediction of k models."""
    return torch.log(F.softmax(logits, dim=-1).mean(dim=0).clamp_min(1e-12))


def disagreement(logits: torch.Tensor) -> float:
    """(k, B, C) logits -> mean over pairs of models of the fraction of inputs they label differently."""
    labels = logits.argmax(dim=-1)
    pairs = list(itertools.combinations(range(len(labels)), 2))
    return float(torch.stack([(labels[i] != labels[j]).float().mean() for i, j in pairs]).mean())


@dataclass
class HydraOptions(Options):
    head_hidden: Any = MISSING  # hidden widths of each head, integers >= 1; [] = one Linear


@register("hydra_heads")
class HydraHeads(Strategy):
    """Terms ``soft`` and ``hard``: the vanilla terms of each head against its own member, averaged."""

    options = HydraOptions

    def __init__(self, student: HydraStudent, teacher: nn.Module, T: float, alpha: float) -> None:
        super().__init__(student, teacher)
        self.T, self.alpha = T, alpha

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        if not is_ensemble(cfg.teacher):
            raise KdrunConfigError(
                "teacher",
                cfg.teacher.name,
                "strategy=hydra_heads needs teacher=ensemble (one head per member)",
            )
        hidden = cfg.strategy.head_hidden
        if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in hidden or []):
            raise KdrunConfigError(
                "strategy.head_hidden", hidden, "must be a list of integers >= 1 ([] = Linear)"
            )
        return {}

    @classmethod
    def build(cls, assets, student: nn.Module) -> "HydraHeads":
        cfg = assets.cfg
        k = len(ensemble_members(cfg))
        body, classifier = split_classifier(student)
        hidden = list(cfg.strategy.head_hidden or [])
        heads = [] if hidden else [classifier]  # head 1 keeps the scratch twin's initial classifier
        for i in range(len(heads), k):
            L.seed_everything(assets.seed + i, verbose=False)
            heads.append(make_head(classifier, hidden))
        teacher = assets.teacher()
        strategy = cls(HydraStudent(body, heads), teacher.model, T=assets.T, alpha=assets.alpha)
        return pretrained_teacher(strategy, assets)

    @classmethod
    def shipped_student(cls, cfg: DictConfig, student: nn.Module) -> nn.Module:
        body, classifier = split_classifier(student)
        hidden = list(cfg.strategy.head_hidden or [])
        heads = [make_head(classifier, hidden) for _ in ensemble_members(cfg)]
        return HydraStudent(body, heads)

    @property
    def weights(self) -> dict[str, float]:
        return {"soft": self.alpha, "hard": 1.0 - self.alpha}

    def _member_logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.teacher.members])

    @torch.no_grad()
    def cache_teacher_logits(self, batches) -> None:
        self.teacher.eval()
        device = module_device(self.teacher)
        self.teacher_logits = torch.cat(  # (k, N, C), on the CPU as the base class keeps them
            [self._member_logits(to_device(x, device)).cpu() for x, *_ in batches], dim=1
        )

    def teacher_outputs(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.teacher_logits is not None:
            if self.teacher_logits.device != x.device:
                self.teacher_logits = self.teacher_logits.to(x.device)
            return self.teacher_logits[:, index]
        with torch.no_grad():
            return self._member_logits(x)

    def loss_terms(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        members = self.teacher_outputs(x, index)
        heads = self.student.heads_logits(x)
        soft = torch.stack(
            [kd_loss(*self.soft_logits(h, t), self.T) for h, t in zip(heads, members, strict=True)]
        ).mean()
        hard = torch.stack([F.cross_entropy(h, y) for h in heads]).mean()
        return mean_of_probabilities(heads), {"soft": soft, "hard": hard}

    def student_name(self, default: str) -> str:
        return f"{default}+{len(self.student.heads)}heads"

    @torch.no_grad()
    def diagnostics(self, data) -> dict:
        was = self.student.training
        self.student.eval()
        self.teacher.eval()
        members, heads = [], []
        device = module_device(self.student)
        for x, *_ in data.loader("test", batch_size=512):
            x = to_device(x, device)
            members.append(self._member_logits(x).cpu())
            heads.append(self.student.heads_logits(x).cpu())
        self.student.train(was)
        return {
            "disagreement_members": disagreement(torch.cat(members, dim=1)),
            "disagreement_heads": disagreement(torch.cat(heads, dim=1)),
        }

    def hparams(self) -> dict:
        return {**super().hparams(), "T": self.T, "alpha": self.alpha, "heads": len(self.student.heads)}
