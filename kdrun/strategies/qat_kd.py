"""Quantisation-aware distillation: fine-tune the distilled student with fake int8 quantisation
while it keeps distilling from the teacher (vanilla loss, ``T``, ``alpha``).

The starting point is the student distilled with vanilla KD for ``epochs`` (cached, as
``strategy=ta_chain`` caches an assistant); the fine-tuning runs ``strategy.qat_epochs``. BatchNorm is
folded into the preceding convolution, then torch.ao's FX graph-mode QAT
(``prepare_qat_fx``, the backend's default QAT qconfig: per-channel symmetric int8 weights,
affine uint8 activations with moving-average ranges) inserts fake quantisation. Exported to ONNX,
each fake quantisation becomes a QuantizeLinear/DequantizeLinear pair with the learned scales
(weights stored as int8), which ONNX Runtime runs with int8 kernels.
"""

import copy
import warnings
from dataclasses import dataclass, replace

import torch
from omegaconf import DictConfig
from torch import nn

from kdrun.config.schema import MISSING, choice, number
from kdrun.data import TensorDataModule
from kdrun.errors import KdrunConfigError
from kdrun.strategies.base import Assets, Options, pretrained_teacher, register
from kdrun.strategies.vanilla import Vanilla

BACKENDS = ("x86", "fbgemm", "qnnpack")


def _fake_quant_class() -> type:
    from torch.ao.quantization import FusedMovingAvgObsFakeQuantize

    class LearnedRangeFakeQuant(FusedMovingAvgObsFakeQuantize):
        """Observes and fake-quantises while training; in eval mode only fake-quantises with the
        ranges learned so far, so evaluating on validation or test images never moves a range."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:
                return super().forward(x)
            zero_point = self.zero_point.to(torch.int32)
            if self.is_per_channel:
                return torch.fake_quantize_per_channel_affine(
                    x, self.scale, zero_point, self.ch_axis, self.quant_min, self.quant_max
                )
            return torch.fake_quantize_per_tensor_affine(
                x, self.scale, zero_point, self.quant_min, self.quant_max
            )

    return LearnedRangeFakeQuant


def quantization_aware(model: nn.Module, backend: str) -> nn.Module:
    """``model`` (eval-mode BatchNorm folded into its convolutions) with fake quantisation: an FX
    ``GraphModule`` whose state dict is the same for every model of the same architecture."""
    from torch.ao.quantization import FusedMovingAvgObsFakeQuantize, get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx
    from torch.fx.experimental.optimization import fuse

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        folded = fuse(copy.deepcopy(model).eval(), inplace=True)
        prepared = prepare_qat_fx(folded.train(), get_default_qat_qconfig_mapping(backend), (torch.zeros(1),))
    learned = _fake_quant_class()
    for module in prepared.modules():
        if type(module) is FusedMovingAvgObsFakeQuantize:
            module.__class__ = learned
    return prepared


class _QDQ(nn.Module):
    """One fake quantisation as constants, in the ops the ONNX exporter turns into
    QuantizeLinear/DequantizeLinear. ``weight``: the int8 values, stored instead of the float ones."""

    def __init__(self, fake_quant: nn.Module, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.qmin, self.qmax = int(fake_quant.quant_min), int(fake_quant.quant_max)
        self.dtype = torch.int8 if self.qmin < 0 else torch.uint8
        self.axis = int(fake_quant.ch_axis) if fake_quant.is_per_channel else None
        if self.axis is None:
            self.scale, self.zero_point = float(fake_quant.scale), int(fake_quant.zero_point)
        else:
            self.register_buffer("scale", fake_quant.scale.detach().clone().float())
            self.register_buffer("zero_point", fake_quant.zero_point.detach().clone().to(torch.int32))
        self.register_buffer("weight", None if weight is None else self._quantize(weight.detach()))

    def _quantize(self, x: torch.Tensor) -> torch.Tensor:
        qd = torch.ops.quantized_decomposed
        if self.axis is None:
            return qd.quantize_per_tensor(x, self.scale, self.zero_point, self.qmin, self.qmax, self.dtype)
        return qd.quantize_per_channel(
            x, self.scale, self.zero_point, self.axis, self.qmin, self.qmax, self.dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qd = torch.ops.quantized_decomposed
        q = self.weight if self.weight is not None else self._quantize(x)
        if self.axis is None:
            return qd.dequantize_per_tensor(q, self.scale, self.zero_point, self.qmin, self.qmax, self.dtype)
        return qd.dequantize_per_channel(
            q, self.scale, self.zero_point, self.axis, self.qmin, self.qmax, self.dtype
        )


def exportable_qat(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of the eval-mode QAT ``model`` whose fake quantisations are QDQ constants (the
    weights as int8); computes what ``model`` computes."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401 - registers torch.ops.quantized_decomposed
    from torch.ao.quantization import FakeQuantizeBase

    model = copy.deepcopy(model).eval()
    weights: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: weights.__setitem__(name, args[0]))
        for name, module in model.named_modules()
        if isinstance(module, FakeQuantizeBase) and name.endswith("weight_fake_quant")
    ]
    with torch.no_grad():
        model(example)  # the weight each fake quantisation receives (independent of the input)
    for hook in hooks:
        hook.remove()
    swapped: dict[int, nn.Module] = {}  # FX shares one fake quantisation between some ops
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if isinstance(module, FakeQuantizeBase):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            if id(module) not in swapped:
                swapped[id(module)] = _QDQ(module, weights.get(name))
            setattr(parent, child, swapped[id(module)])
    return model


@dataclass
class QatOptions(Options):
    qat_epochs: int = number(MISSING, ge=1, integer=True)  # fine-tuning epochs with fake quantisation
    backend: str = choice(MISSING, *BACKENDS)


@register("qat_kd")
class QatKD(Vanilla):
    """Vanilla KD into a fake-quantised copy of the distilled student; ships int8."""

    options = QatOptions

    quantized = True

    @classmethod
    def preflight(cls, cfg: DictConfig, data: TensorDataModule) -> None:
        from kdrun.models.build import build

        others = [f for f in cfg.export.formats if f != "onnx_int8"]
        if others:
            raise KdrunConfigError(
                "export.formats", others[0], "strategy=qat_kd ships its int8 student only: onnx_int8"
            )
        model = build(cfg.student, data)
        try:
            quantization_aware(model, cfg.strategy.backend).train()(data.splits["train"][0][:2])
        except Exception as err:  # noqa: BLE001 - FX tracing and QAT raise many kinds
            reason = (str(err).strip().splitlines() or [""])[0][:160]
            raise KdrunConfigError(
                "student.name",
                cfg.student.name,
                f"cannot be prepared for quantisation-aware training (torch.ao FX QAT): "
                f"{type(err).__name__}: {reason}",
            ) from None

    @classmethod
    def build(cls, assets: Assets, student: nn.Module) -> "QatKD":
        cfg = assets.cfg
        teacher = assets.teacher()
        start = assets.distilled(cfg.student, teacher)
        fp32 = replace(start, role="fp32_student", scratch=(cfg.student, cfg.seed))
        model = quantization_aware(start.model, cfg.strategy.backend)
        strategy = cls(model, teacher.model, T=assets.T, alpha=assets.alpha)
        strategy.members = [fp32]
        strategy.qat_epochs = int(cfg.strategy.qat_epochs)
        return pretrained_teacher(strategy, assets)

    @classmethod
    def shipped_student(cls, cfg: DictConfig, student: nn.Module) -> nn.Module:
        model = quantization_aware(student, cfg.strategy.backend)
        # Per-channel ranges are sized on the first observation; a fresh model has not seen one,
        # so size them by the weights' output channels for the trained state dict to fit.
        for module in model.modules():
            fake_quant = getattr(module, "weight_fake_quant", None)
            if fake_quant is None or not fake_quant.is_per_channel:
                continue
            channels = module.weight.shape[fake_quant.ch_axis]
            fake_quant.scale = torch.ones(channels)
            fake_quant.zero_point = torch.zeros(channels, dtype=fake_quant.zero_point.dtype)
            observer = fake_quant.activation_post_process
            observer.min_val = torch.full((channels,), float("inf"))
            observer.max_val = torch.full((channels,), float("-inf"))
        return model

    @classmethod
    def exportable(cls, model: nn.Module, example: torch.Tensor) -> nn.Module:
        return exportable_qat(model, example)

    def student_epochs(self, cfg: DictConfig) -> int:
        return int(cfg.strategy.qat_epochs)

    def hparams(self) -> dict:
        return {**super().hparams(), "quantization": "fx_qat", "qat_epochs": self.qat_epochs}
