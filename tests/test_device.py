"""``auto`` trainer settings resolve for the machine: a GPU when there is one, bf16 where it is
native, deterministic on CPU and "warn" on a GPU; a GPU asked for but absent is a config error."""

import json
import os

import pytest
import torch

from kdrun.errors import KdrunConfigError
from kdrun.runtime import device
from kdrun.runtime.device import Placement, placed, resolve, to_device
from kdrun.train import phases as phases_module
from tests.conftest import make_cfg


@pytest.fixture
def fake_cuda(monkeypatch):
    """This machine as a CUDA machine: ``torch.cuda.is_available()`` is true; bf16 is set per test."""

    def with_bf16(native: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake GPU")

    return with_bf16


ON_GPU = torch.cuda.is_available() or torch.backends.mps.is_available()
cpu_only = pytest.mark.skipif(ON_GPU, reason="checks a machine without a GPU")


@cpu_only
def test_defaults_on_a_cpu_machine_are_the_cpu_settings():
    assert resolve(make_cfg().trainer) == Placement("cpu", "32-true", True, False)


@pytest.mark.parametrize(("bf16", "precision"), [(True, "bf16-mixed"), (False, "32-true")])
def test_defaults_on_a_cuda_machine(fake_cuda, bf16, precision):
    fake_cuda(bf16)
    placement = resolve(make_cfg().trainer)
    assert placement == Placement("cuda", precision, "warn", False)
    assert placement.trainer_args() == {
        "accelerator": "cuda",
        "precision": precision,
        "deterministic": "warn",
        "benchmark": False,
    }
    assert placement.line() == f"device: cuda (Fake GPU) · precision {precision} · deterministic warn"


def test_bf16_by_emulation_does_not_count(monkeypatch):
    """Before Ampere, torch reports bf16 as supported through emulation, which is slower than fp32."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve(make_cfg().trainer).precision == "32-true"


def test_mps_is_a_gpu_without_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve(make_cfg().trainer) == Placement("mps", "32-true", "warn", False)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer.deterministic=false"], Placement("cuda", "bf16-mixed", False, True)),
        (["trainer.deterministic=true"], Placement("cuda", "bf16-mixed", True, False)),
        (
            ["trainer.deterministic=false", "trainer.benchmark=false"],
            Placement("cuda", "bf16-mixed", False, False),
        ),
        (["trainer.accelerator=cpu"], Placement("cpu", "32-true", True, False)),
        (
            ["trainer.accelerator=gpu", "trainer.precision=16-mixed"],
            Placement("cuda", "16-mixed", "warn", False),
        ),
        (
            ["trainer.accelerator=cuda", "trainer.devices=2"],
            Placement("cuda", "bf16-mixed", "warn", False, 2),
        ),
    ],
)
def test_explicit_settings_win_over_auto(fake_cuda, overrides, expected):
    fake_cuda(True)
    assert resolve(make_cfg(*overrides).trainer) == expected


@cpu_only
@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "mps"])
def test_a_gpu_asked_for_on_a_machine_without_one_is_a_config_error(accelerator):
    with pytest.raises(KdrunConfigError, match=rf"trainer.accelerator.*{accelerator}.*sees no GPU"):
        resolve(make_cfg(f"trainer.accelerator={accelerator}").trainer)


@cpu_only
def test_prepare_rejects_a_missing_gpu_before_training(tmp_path):
    from kdrun.train.prepare import prepare

    cfg = make_cfg("trainer.accelerator=gpu", f"paths.output_root={tmp_path}")
    with pytest.raises(KdrunConfigError, match="trainer.accelerator"):
        prepare(cfg)
    assert not (tmp_path / "cache").exists()


@cpu_only
def test_cache_keys_of_auto_on_cpu_equal_the_explicit_cpu_settings(tiny_data, tmp_path, monkeypatch):
    """Entries cached before ``auto`` existed (accelerator cpu, 32-true, deterministic) stay valid,
    and a GPU's entries are others (its kernels round differently)."""
    from kdrun.cache import Cache
    from kdrun.train.phases import Phases

    specs = []
    monkeypatch.setattr(
        Cache, "get_or_build", lambda self, kind, name, spec, build, *about: specs.append(spec) or 1 / 0
    )
    explicit = ("trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.deterministic=true")
    for overrides in [(), explicit, ("trainer.benchmark=false",)]:
        ctx = Phases(make_cfg(*overrides), tiny_data, Cache(tmp_path))
        with pytest.raises(ZeroDivisionError):
            ctx.scratch(ctx.cfg.student, 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    ctx = Phases(make_cfg(), tiny_data, Cache(tmp_path))
    with pytest.raises(ZeroDivisionError):
        ctx.scratch(ctx.cfg.student, 0)
    assert specs[0] == specs[1] == specs[2] != specs[3]
    assert specs[0]["trainer"]["deterministic"] is True and "benchmark" not in specs[0]["trainer"]
    assert specs[3]["trainer"] | {} == specs[0]["trainer"] | {
        "accelerator": "cuda",
        "precision": "bf16-mixed",
        "deterministic": "warn",
    }


def test_a_teacher_precision_trains_the_teacher_alone_in_it(tiny_data, tmp_path):
    """``teacher.precision=bf16-mixed``: the teacher trains under Lightning's bf16 autocast and its
    cache key says so; the scratch student keeps ``trainer.precision`` and its key."""
    from kdrun.cache import Cache
    from kdrun.train.phases import Phases

    seen = []
    real_fit = phases_module.fit

    def fit(strategy, data, cfg, **kwargs):
        seen.append((kwargs["label"], cfg.trainer.precision))
        return real_fit(strategy, data, cfg, **kwargs)

    overrides = ("teacher=mlp", "epochs=1", "teacher.epochs=1", "recalibrate_bn=false", "logger=none")
    specs = {}
    for precision in ("null", "bf16-mixed"):
        cache = Cache(tmp_path / precision)
        phases = Phases(make_cfg(*overrides, f"teacher.precision={precision}"), tiny_data, cache)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(phases_module, "fit", fit)
            phases.teacher()
            phases.scratch(phases.cfg.student, 0)
        entries = cache.root.glob("*/*/spec.json")
        specs[precision] = {p.parent.parent.name: json.loads(p.read_text()) for p in entries}
    run = make_cfg().trainer.precision  # the trainer group's own (auto)
    assert seen == [("teacher", run), ("baseline", run), ("teacher", "bf16-mixed"), ("baseline", run)]
    assert phases.cfg.trainer.precision == run  # the run's own config is left as it was
    default, bf16 = specs["null"], specs["bf16-mixed"]
    assert default["baseline"] == bf16["baseline"]
    assert (default["teacher"]["trainer"]["precision"], bf16["teacher"]["trainer"]["precision"]) == (
        "32-true",
        "bf16-mixed",
    )


def test_placed_moves_a_model_for_the_block_and_back():
    moves = []

    class Model(torch.nn.Linear):
        def to(self, device):
            moves.append(str(device))
            return self

    model = Model(2, 2)
    with placed(model, torch.device("cuda")):
        assert moves == ["cuda"]
    assert moves == ["cuda", "cpu"]
    with placed(model, torch.device("cpu")):  # already there
        pass
    assert moves == ["cuda", "cpu"]


def test_uploads_do_not_wait_and_downloads_do(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.Tensor, "to", lambda self, dev, non_blocking=False: calls.append(non_blocking))
    to_device(torch.zeros(1), torch.device("cuda"))
    to_device(torch.zeros(1), torch.device("cpu"))
    assert calls == [True, False]


@cpu_only
def test_gpu_kind_is_none_here():
    assert device.gpu_kind() is None


def test_ddp_on_gpus_spawns_with_nccl_and_leaves_worker_threads_alone(fake_cuda):
    from kdrun.training.fit import DDPWorker, trainer_args

    fake_cuda(True)
    args = trainer_args(make_cfg("trainer.devices=2").trainer)
    ddp = args["strategy"]
    ddp.parallel_devices = [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert (args["accelerator"], ddp._start_method, ddp._get_process_group_backend()) == (
        "cuda",
        "spawn",
        "nccl",
    )
    assert DDPWorker(None, 2).threads is None and DDPWorker(8, 2).threads == 4


@pytest.mark.parametrize("gpu", [False, True])
def test_results_table_labels_which_device_each_latency_is_from(gpu):
    from rich.console import Console

    from kdrun.report.table import results_table

    row = {"name": "mlp", "source": "trained", "top1": 0.9, "params": 10, "flops": 20, "size_mb": 0.1}
    row["latency_ms"] = {"batch1": 0.5, "batch64": 2.0}
    if gpu:
        row |= {"device": "cuda", "device_latency_ms": {"batch1": 0.125, "batch64": 0.25}}
    results = {
        "strategy": {"name": "vanilla"},
        "data": {"name": "digits", "test": 10},
        "teacher": None,
        "baseline": row,
        "student": row,
        "deltas": {"kd_gain_top1": 0.0},
        "seed": 0,
    }
    console = Console(record=True, width=200)
    console.print(results_table(results))
    text = console.export_text()
    if gpu:
        assert "cpu ms @1" in text and "cuda ms @64" in text and "0.125" in text
    else:
        assert " ms @1 " in text and "cpu ms" not in text and "cuda" not in text


@pytest.mark.parametrize(("loads", "kept"), [(False, False), (True, True)])
def test_the_nvml_check_is_dropped_only_where_nvml_cannot_load(monkeypatch, loads, kept):
    """Without NVML, Lightning's NVML-based check makes every optimizer step reload it in vain."""

    def cdll(name: str) -> object:
        assert name == device.NVML_LIBRARY
        if not loads:
            raise OSError(f"{name}: cannot open shared object file")
        return object()

    monkeypatch.setattr(device.ctypes, "CDLL", cdll)
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", lambda: 0, raising=False)  # a CUDA build
    monkeypatch.setenv(device.NVML_CHECK, "1")
    device.skip_unloadable_nvml_check()
    assert (os.environ.get(device.NVML_CHECK) == "1") is kept


def test_a_fit_leaves_no_failing_nvml_check_behind(tiny_data, tmp_path, monkeypatch):
    from kdrun.strategies.scratch import Scratch
    from kdrun.training.fit import fit

    monkeypatch.setattr(device.ctypes, "CDLL", lambda name: (_ for _ in ()).throw(OSError(name)))
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", lambda: 0, raising=False)
    monkeypatch.setenv(device.NVML_CHECK, "1")  # as importing Lightning sets it
    fit(
        Scratch(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))),
        tiny_data,
        make_cfg(),
        epochs=1,
        seed=0,
        log_dir=tmp_path,
        label="t",
    )
    assert device.NVML_CHECK not in os.environ
