"""What a strategy is: the models it trains, the frozen ones it reads, the loss terms of a step.

A strategy is built in two steps, both driven by the config:

* ``sections(cfg)`` names the extra models it needs (teachers, assistants, peers) so that
  ``kdrun.config.validate`` and the shape probe can reject bad input before any training;
  ``preflight(cfg, data)`` checks anything else that needs the data (a soft-label file).
* ``build(assets, student)`` gets ready-made models from ``assets`` (trained or cached teachers,
  fresh peers) and returns the strategy. ``teacher_member`` and ``members`` say what the report
  shows besides the distilled student and its scratch twin.
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

import torch
from omegaconf import DictConfig
from torch import nn

from kdrun.config.schema import MISSING
from kdrun.data import TensorDataModule
from kdrun.losses import standardize
from kdrun.models.asset import Asset
from kdrun.models.ensemble import TeacherEnsemble
from kdrun.runtime.device import module_device, to_device

STRATEGIES: dict[str, type["Strategy"]] = {}


def register(name: str) -> Callable[[type["Strategy"]], type["Strategy"]]:
    """Register a strategy class under ``name`` (the value of ``strategy.name``)."""

    def wrap(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return wrap


class Assets(Protocol):
    """What ``Strategy.build`` receives: the run's knobs, config and data, and ready models.

    ``T``, ``alpha``, ``seed`` and ``epochs`` are the top-level keys of the same names, the only
    spelling of each; a strategy's own keys are ``cfg.strategy``. ``kdrun.train.phases.Phases``
    implements it (checkpoint, cache hit, or train and cache); strategies never import that layer.
    """

    T: float  # softmax temperature of the soft targets
    alpha: float  # weight of the soft term; 1 - alpha weighs the hard cross-entropy
    seed: int  # the student's seed (and its scratch twin's)
    epochs: int  # the student's training epochs
    cfg: DictConfig
    data: TensorDataModule

    def teacher(self, section: DictConfig | None = None) -> Asset:
        """A pre-trained teacher for ``section``; without it, the configured ``teacher``."""
        ...

    def build(self, section: DictConfig, seed: int | None = None) -> nn.Module:
        """A fresh model; with ``seed``, initialised from that seed."""
        ...

    def distilled(self, section: DictConfig, teacher: Asset) -> Asset:
        """``section`` distilled from ``teacher`` (Hinton KD), cached."""
        ...


@dataclass
class Options:
    """A strategy's own keys (``cfg.strategy``): its schema. Subclasses add fields; values come
    from ``conf/strategy/<name>.yaml``, so a field's default is ``MISSING``."""

    name: str = MISSING


class Strategy(nn.Module):
    """A training method. Subclasses implement ``loss_terms`` and declare ``weights``.

    ``student`` is the model that is evaluated, measured and shipped. ``frozen`` models (teachers)
    are read-only: no gradients, eval mode, forward under ``torch.no_grad``. The LightningModule
    sums ``weights[k] * terms[k]`` and logs each term as ``train/loss_<k>``.
    """

    name: ClassVar[str] = ""
    # The schema of ``cfg.strategy`` (types, bounds, no unknown keys), checked before any training.
    options: ClassVar[type] = Options
    # Whether the teacher's logits can replace running it (kdrun.cache.logits); not when a step
    # needs more of the teacher than its logits (intermediate features).
    caches_logits: ClassVar[bool] = True
    # Whether a step reads one frozen teacher's (B, C) logits through ``teacher_outputs``, so that
    # outputs stored per augmented view can stand in for it (``kd.cache_logits=views``).
    caches_views: ClassVar[bool] = False
    # Whether the student trains with fake quantisation: its ONNX export is the int8 model itself
    # (kdrun.export), compared with the fp32 student of the report's ``fp32_student`` row.
    quantized: ClassVar[bool] = False

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.teacher_logits: torch.Tensor | None = None  # (N_train, C) when cached; not a buffer
        if teacher is not None:
            teacher.requires_grad_(False).eval()
        self.teacher_member: Asset | None = None  # the "teacher" row of the report
        self.members: list[Asset] = []  # further rows of the report (each with its role)

    # ---- built from the config --------------------------------------------------------------
    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        """Extra model sections this strategy needs, by config key; raises on a bad entry."""
        return {}

    @classmethod
    def preflight(cls, cfg: DictConfig, data: TensorDataModule) -> None:
        """Checks that need the data, run before any training; raise ``KdrunConfigError``."""

    @classmethod
    def build(cls, assets: Assets, student: nn.Module) -> "Strategy":
        """The strategy for this run; ``student`` is freshly initialised with the run's seed."""
        raise NotImplementedError

    # ---- used while training ----------------------------------------------------------------
    @property
    def frozen(self) -> list[nn.Module]:
        """Modules that must stay in eval mode and receive no gradient."""
        return [self.teacher] if self.teacher is not None else []

    @property
    def trained(self) -> list[nn.Module]:
        """Every model this strategy trains (BatchNorm statistics are re-estimated for each)."""
        return [self.student]

    @property
    def weights(self) -> dict[str, float]:
        """Weight of each loss term in the total loss."""
        raise NotImplementedError

    @torch.no_grad()
    def cache_teacher_logits(self, batches: Iterable) -> None:
        """Run the frozen teacher once over the training set, in sample-index order.

        Steps then read the logits by index instead of running the teacher. Only valid when the
        training inputs are the same every epoch (no random augmentation), as for in-memory data.
        A strategy without a frozen teacher has nothing to cache. The teacher runs where it is;
        the logits are kept on the CPU (``teacher_outputs`` moves them to the training device
        once, so each DDP worker takes them to its own GPU).
        """
        if self.teacher is None:
            return
        self.teacher.eval()
        device = module_device(self.teacher)
        self.teacher_logits = torch.cat([self.teacher(to_device(x, device)).cpu() for x, *_ in batches])

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

    def student_epochs(self, cfg: DictConfig) -> int:
        """Epochs of the student phase (a fine-tuning method trains less than the baseline)."""
        return int(cfg.student.epochs)

    standardize = False  # kd.standardize: z-score logits before the temperature (set by the run)

    def soft_logits(self, *logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The logits a soft (temperature) term compares: z-scored per sample with
        ``kd.standardize=true`` (Sun et al. 2024), as they are otherwise. Hard terms use raw logits."""
        return tuple(standardize(z) for z in logits) if self.standardize else logits

    def on_train_epoch_start(self, epoch: int) -> None:
        """Called at the start of every training epoch (a schedule such as FitNets' stages)."""

    @classmethod
    def shipped_student(cls, cfg: DictConfig, student: nn.Module) -> nn.Module:
        """The architecture of the model this strategy ships, around a fresh ``student``.

        ``kdrun export`` rebuilds it from the run's config and loads student.safetensors into
        it; a strategy that reshapes the student (Hydra's k heads) returns the reshaped model.
        """
        return student

    @classmethod
    def exportable(cls, model: nn.Module, example: torch.Tensor) -> nn.Module:
        """The shipped ``model`` in a form the ONNX exporter takes (the same computation)."""
        return model

    def student_name(self, default: str) -> str:
        """The distilled student's name in the report (``default``: its config's model name)."""
        return default

    def diagnostics(self, data: TensorDataModule) -> dict[str, Any]:
        """Strategy-specific measurements after training, for results.json (``diagnostics``)."""
        return {}

    def hparams(self) -> dict[str, Any]:
        """What to record about this strategy in results.json."""
        return {"name": self.name, "weights": self.weights}


def pretrained_teacher(strategy: Strategy, assets: Assets) -> Strategy:
    """Record the configured teacher (``teacher=``) as the report's teacher row."""
    asset = assets.teacher()
    model = asset.model.at_temperature(1.0) if isinstance(asset.model, TeacherEnsemble) else asset.model
    strategy.teacher_member = replace(asset, model=model, role="teacher", members=[])
    strategy.members += [replace(m, role=f"teacher_{i + 1}") for i, m in enumerate(asset.members)]
    return strategy
