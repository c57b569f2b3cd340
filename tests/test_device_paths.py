"""Every strategy's training step on a device other than the CPU, checked here without a GPU.

* Device: the strategy is moved as Lightning moves it (``.to(device)``), to the "meta" device;
  a step (forward, loss terms, backward) then touches only tensors on that device. A tensor left
  on the CPU (a cached-logit table, a constant made without ``device=``) would break on a GPU.
* Determinism: PyTorch documents the ops that raise on CUDA under
  ``torch.use_deterministic_algorithms(True)`` (its docstring). The aten ops a step runs are
  recorded and matched against that list; any match requires the GPU default of
  ``trainer.deterministic`` to be ``"warn"``. The same steps run on the CPU with deterministic
  algorithms on, as a CPU run does.
"""

import re

import pytest
import torch
import torchvision
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from kdrun.data.augment import Augment
from kdrun.models.ensemble import TeacherEnsemble
from kdrun.runtime.device import resolve
from kdrun.strategies import STRATEGIES, Strategy
from kdrun.strategies.hints import regressor
from kdrun.strategies.hydra_heads import HydraStudent, split_classifier
from tests.conftest import make_cfg

CLASSES, SHAPE, BATCH = 4, (3, 8, 8), 4

# PyTorch's documented "throws a RuntimeError when deterministic" entries -> the aten ops (as a
# dispatch mode sees them, below autograd) that implement them. A torch upgrade that changes the
# list fails test_documented_list_is_mapped until this table follows.
DOCUMENTED_ATEN = {
    "torch.nn.AvgPool3d": {"avg_pool3d_backward"},
    "torch.nn.AdaptiveAvgPool2d": {"_adaptive_avg_pool2d_backward"},
    "torch.nn.AdaptiveAvgPool3d": {"_adaptive_avg_pool3d_backward"},
    "torch.nn.AdaptiveMaxPool2d": {"adaptive_max_pool2d_backward"},
    "torch.nn.FractionalMaxPool2d": {"fractional_max_pool2d_backward"},
    "torch.nn.FractionalMaxPool3d": {"fractional_max_pool3d_backward"},
    "torch.nn.MaxUnpool1d": {"max_unpool2d"},
    "torch.nn.MaxUnpool2d": {"max_unpool2d"},
    "torch.nn.MaxUnpool3d": {"max_unpool3d"},
    "torch.nn.functional.interpolate": {
        "upsample_linear1d_backward",
        "upsample_bilinear2d_backward",
        "_upsample_bilinear2d_aa_backward",
        "upsample_bicubic2d_backward",
        "_upsample_bicubic2d_aa_backward",
        "upsample_trilinear3d_backward",
    },
    "torch.nn.ReflectionPad1d": {"reflection_pad1d_backward"},
    "torch.nn.ReflectionPad2d": {"reflection_pad2d_backward"},
    "torch.nn.ReflectionPad3d": {"reflection_pad3d_backward"},
    # The CUDA kernel alerts in the spatial variant only; (B, C) cross-entropy is deterministic.
    "torch.nn.NLLLoss": {"nll_loss2d_forward"},
    "torch.nn.CTCLoss": {"_ctc_loss_backward"},
    "torch.nn.EmbeddingBag": {"_embedding_bag_backward", "_embedding_bag_dense_backward"},
    "torch.Tensor.put_": {"put_", "put"},
    "torch.histc": {"histc"},
    "torch.bincount": {"bincount"},
    "torch.median": {"median"},
    "torch.nn.functional.grid_sample": {"grid_sampler_2d_backward", "grid_sampler_3d_backward"},
    "torch.Tensor.scatter_reduce": {"scatter_reduce"},
    "torch.Tensor.resize_": set(),  # quantized tensors only
}


def documented_throwers() -> dict[str, str]:
    """{name: condition} of the ops ``torch.use_deterministic_algorithms`` says raise an error."""
    doc = torch.use_deterministic_algorithms.__doc__
    section = doc.split("operations will throw a")[1].split("In addition")[0]
    entries = re.findall(r"\* :(?:class|func):`([\w.]+)`([^*]*)", section)
    return {name: " ".join(condition.split()) for name, condition in entries}


TRANSFERS = {"_to_copy", "copy_"}


class Recorder(TorchDispatchMode):
    """Records every aten op a block runs, the devices of the tensors each op reads and writes,
    and the copies between devices."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()
        self.devices: dict[str, set[str]] = {}
        self.transfers: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.ops.add(name)
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if name in TRANSFERS and tensors[-1].device != out.device:
            self.transfers.append((tensors[-1].device.type, out.device.type))
            return out
        for t in [*tensors, *[t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]]:
            if t.dim() > 0:  # a 0-dim CPU tensor is a scalar argument, also on a GPU
                self.devices.setdefault(t.device.type, set()).add(name)
        return out


def tiny_net(width: int, pool: int = 1) -> nn.Module:
    """A torchvision-shaped classifier: conv features, adaptive average pooling, a linear head."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(pool),
        nn.Flatten(),
        nn.Linear(width * pool * pool, CLASSES),
    )


def build(name: str, cached: bool = False) -> Strategy:
    """Every registered strategy, around tiny models, as its ``build`` would make it."""
    torch.manual_seed(0)
    cls = STRATEGIES[name]
    student, teacher = tiny_net(8), tiny_net(16).eval()
    kd = {"T": 4.0, "alpha": 0.9}
    if name == "scratch":
        strategy = cls(student)
    elif name in ("vanilla", "ta_chain"):
        strategy = cls(student, teacher, **kd)
    elif name == "soft_labels":
        strategy = cls(student, None, **kd)
        strategy.teacher_logits = torch.randn(16, CLASSES)  # read from a file: on the CPU
    elif name == "dkd":
        strategy = cls(student, teacher, T=4.0, tckd_weight=1.0, nckd_weight=8.0, ce_weight=1.0)
    elif name == "dist":
        strategy = cls(student, teacher, T=4.0, beta=2.0, gamma=2.0, ce_weight=1.0)
    elif name == "crd":
        labels = torch.arange(BATCH) % CLASSES  # the training labels its negatives are drawn from
        example = torch.randn(2, *SHAPE)
        strategy = cls(student, teacher, labels, example, T=4.0, feat_dim=8, nce_k=5, nce_t=0.07, nce_m=0.5,
                       beta=0.8, ce_weight=1.0, kd_weight=1.0)  # fmt: skip
    elif name == "multi_teacher":
        ensemble = TeacherEnsemble([teacher, tiny_net(12)], T=4.0, weighting="confidence")
        strategy = cls(student, ensemble, **kd)
    elif name == "hydra_heads":
        body, head = split_classifier(student)
        heads = [head, nn.Linear(head.in_features, CLASSES)]
        strategy = cls(HydraStudent(body, heads), TeacherEnsemble([teacher, tiny_net(12)], T=4.0), **kd)
    elif name == "mutual":
        strategy = cls(student, [tiny_net(8)], peer_temperature=1.0, peer_weight=1.0)
    elif name == "qat_kd":
        from kdrun.strategies.qat_kd import quantization_aware

        strategy = cls(quantization_aware(student, "x86"), teacher, **kd)
    elif name == "online":
        strategy = cls(student, tiny_net(16), **kd)
    elif name in ("hints", "attention"):
        # Teacher layer 8x8 (before pooling), student layer 4x4: the loss resizes bilinearly.
        pairs = [("2", "4")]
        extra = {"p": 2.0} if name == "attention" else {}
        if name == "hints":
            extra = {"regressors": [regressor((1, 8, 4, 4), (1, 16, 8, 8))], "hint_epochs": 0}
        strategy = cls(student, teacher, **kd, pairs=pairs, feat_weight=1.0, **extra)
    else:
        raise AssertionError(f"strategy {name!r} has no tiny build here: add one")
    if cached:
        x = torch.randn(16, *SHAPE)
        strategy.cache_teacher_logits([(x[:8],), (x[8:],)])
    return strategy


CASES = [(name, False) for name in sorted(STRATEGIES)] + [
    ("vanilla", True),
    ("dkd", True),
    ("multi_teacher", True),
    ("hydra_heads", True),
]


def step(strategy: Strategy, device: str, augment: Augment | None = None) -> Recorder:
    """One training step of ``strategy`` on ``device``, as DistillModule runs it; the ops recorded."""
    strategy.to(device)  # what Lightning does with the module that holds the strategy
    strategy.train()
    for frozen in strategy.frozen:
        frozen.eval()
    x = torch.randn(BATCH, *SHAPE).to(device)
    y = (torch.arange(BATCH) % CLASSES).to(device)
    index = torch.arange(BATCH).to(device)
    with Recorder() as recorder:
        if augment is not None:  # DataModule.on_after_batch_transfer, on the batch's device
            x = augment(x)
        _, terms = strategy.loss_terms(x, y, index)
        loss = sum(weight * terms[name] for name, weight in strategy.weights.items())
        loss.backward()
    return recorder


def test_every_strategy_has_a_case():
    assert {name for name, _ in CASES} == set(STRATEGIES)


# "meta" stands in for a GPU here; on a machine with CUDA the same checks run there too.
DEVICES = ["meta", *(["cuda"] if torch.cuda.is_available() else [])]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "cached"), CASES)
def test_a_step_touches_only_the_students_device(name, cached, device):
    """Every op reads and writes tensors on the device; a table kept on the CPU (cached teacher
    logits, a soft-label file) is copied there once, on the first step, not on every step."""
    strategy = build(name, cached)
    augment = Augment([0.5] * 3, [0.25] * 3, crop_padding=2, flip=True, color_jitter=0.2)
    first = step(strategy, device, augment if name == "vanilla" else None)
    assert set(first.devices) == {device}, f"ops on other devices: {first.devices}"
    assert all(p.grad is None or p.grad.device.type == device for p in strategy.parameters())
    tables = (strategy.teacher_logits is not None) + 2 * (name == "vanilla")  # logits; mean, std
    assert first.transfers == [("cpu", device)] * tables
    second = step(strategy, device, augment if name == "vanilla" else None)
    assert set(second.devices) == {device} and second.transfers == []


@pytest.fixture
def deterministic(monkeypatch):
    """Deterministic algorithms on, as Lightning turns them on (with cuBLAS's fixed workspace)."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


def test_documented_list_is_mapped():
    """The ops PyTorch documents as raising are those this file maps (23 in torch 2.14)."""
    assert set(documented_throwers()) == set(DOCUMENTED_ATEN)
    assert "CUDA" in documented_throwers()["torch.nn.AdaptiveAvgPool2d"]


THROWERS = {op: name for name, ops in DOCUMENTED_ATEN.items() for op in ops}


@pytest.fixture
def gpu_default(monkeypatch) -> str | bool:
    """``trainer.deterministic`` as the default config resolves it on a CUDA machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    placement = resolve(make_cfg().trainer)
    assert placement.accelerator == "cuda"
    return placement.deterministic


@pytest.mark.parametrize(("name", "cached"), CASES)
def test_a_cpu_step_under_deterministic_algorithms_and_what_would_raise_on_cuda(
    name, cached, deterministic, gpu_default
):
    """The step runs on the CPU with deterministic algorithms on (a CPU run's default). The ops it
    runs that raise on CUDA when deterministic: resizing feature maps (hints, attention) runs
    bilinear interpolation's backward, so the GPU default must be "warn" (``true`` would raise at
    the first backward)."""
    recorder = step(build(name, cached), "cpu")
    raising = {THROWERS[op] for op in recorder.ops if op in THROWERS}
    assert raising == ({"torch.nn.functional.interpolate"} if name in ("hints", "attention") else set())
    assert not raising or gpu_default == "warn"


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3", "efficientnet_b0", "resnet32x4", "wrn_40_2"])
def test_kdrun_models_run_no_op_that_raises_on_cuda(name):
    """Their adaptive average pooling is to 1x1, which runs as a mean (deterministic on CUDA)."""
    from kdrun.models.build import build as build_model

    section = make_cfg(f"student={name}")
    data = type("Data", (), {"num_classes": 10, "input_shape": (3, 32, 32)})
    with torch.device("meta"):
        net = build_model(section.student, data)
    with Recorder() as recorder:
        net(torch.randn(2, 3, 32, 32, device="meta")).sum().backward()
    assert {THROWERS[op] for op in recorder.ops if op in THROWERS} == set()


def test_pooling_to_more_than_one_pixel_raises_on_cuda(gpu_default):
    """torchvision's ImageNet vgg pools to 7x7: the pooling backward is on the list."""
    with torch.device("meta"):
        net = torchvision.models.get_model("vgg11", num_classes=CLASSES)
    with Recorder() as recorder:
        net(torch.randn(2, 3, 32, 32, device="meta")).sum().backward()
    assert {THROWERS[op] for op in recorder.ops if op in THROWERS} == {"torch.nn.AdaptiveAvgPool2d"}
    assert gpu_default == "warn"


@needs_cuda
@pytest.mark.parametrize(("name", "cached"), CASES)
def test_on_cuda_deterministic_true_raises_where_the_list_says(name, cached, deterministic):
    """On a GPU: the documented list, as mapped here, is what actually raises."""
    strategy = build(name, cached)
    if name in ("hints", "attention"):
        with pytest.raises(RuntimeError, match="does not have a deterministic implementation"):
            step(strategy, "cuda")
    else:
        step(strategy, "cuda")


def test_batchnorm_recalibration_feeds_the_model_on_its_device(monkeypatch):
    """At the end of a fit the model is still on the training device; the loader's batches are
    on the CPU and go to the model's device (BatchNorm's cumulative average cannot run on "meta":
    the device is stubbed)."""
    import kdrun.training.callbacks as callbacks

    moved = []
    monkeypatch.setattr(callbacks, "module_device", lambda model: torch.device("cuda"))
    monkeypatch.setattr(callbacks, "to_device", lambda x, device: moved.append(device.type) or x)
    callbacks.recalibrate_batchnorm(tiny_net(8), [(torch.randn(BATCH, *SHAPE), torch.zeros(BATCH))] * 2)
    assert moved == ["cuda", "cuda"]
