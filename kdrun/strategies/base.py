"""What a strategy is: the models it trains, the frozen ones it reads, the loss terms of a step."""

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

STRATEGIES: dict[str, type["Strategy"]] = {}


def register(name: str) -> Callable[[type["Strategy"]], type["Strategy"]]:
    """Register a strategy class under ``name`` (the value of ``strategy.name``)."""

    def wrap(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return wrap


class Strategy(nn.Module):
    """A training method. Subclasses implement ``loss_terms`` and declare ``weights``.

    ``student`` is the model that is evaluated, measured and shipped. ``frozen`` models (teachers)
    are read-only: no gradients, eval mode, forward under ``torch.no_grad``. The LightningModule
    sums ``weights[k] * terms[k]`` and logs each term as ``train/loss_<k>``.
    """

    name: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = False

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.teacher_logits: torch.Tensor | None = None  # (N_train, C) when cached; not a buffer
        if teacher is not None:
            teacher.requires_grad_(False).eval()

    @classmethod
    def from_config(cls, kd: DictConfig, student: nn.Module, teacher: nn.Module | None) -> "Strategy":
        """Build from the ``kd`` config section (T, alpha, ...)."""
        return cls(student, teacher if cls.needs_teacher else None)

    @property
    def frozen(self) -> list[nn.Module]:
        """Modules that must stay in eval mode and receive no gradient."""
        return [self.teacher] if self.teacher is not None else []

    @property
    def weights(self) -> dict[str, float]:
        """Weight of each loss term in the total loss."""
        raise NotImplementedError

    @torch.no_grad()
    def cache_teacher_logits(self, batches: Iterable) -> None:
        """Run the frozen teacher once over the training set, in sample-index order.

        Steps then read the logits by index instead of running the teacher. Only valid when the
        training inputs are the same every epoch (no random augmentation), as for in-memory data.
        """
        self.teacher.eval()
        self.teacher_logits = torch.cat([self.teacher(x) for x, *_ in batches])

    def teacher_outputs(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The frozen teacher's logits for a batch: from the cache when there is one."""
        if self.teacher_logits is not None:
            if self.teacher_logits.device != x.device:
                self.teacher_logits = self.teacher_logits.to(x.device)
            return self.teacher_logits[index]
        with torch.no_grad():
            return self.teacher(x)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters the optimizer updates."""
        return (p for p in self.parameters() if p.requires_grad)

    def loss_terms(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One training batch -> (student logits, {term name: unweighted scalar loss})."""
        raise NotImplementedError

    def hparams(self) -> dict[str, Any]:
        """What to record about this strategy in results.json."""
        return {"name": self.name, "weights": self.weights}
