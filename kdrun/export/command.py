"""``kdrun export <run dir>``: the run's distilled student -> ONNX / TorchScript / int8 ONNX,
checked and timed.

Reads the run's results.json (its resolved config) and student.safetensors, rebuilds the shipped
architecture, writes each format to ``<run dir>/export/``, checks parity on the run's test split,
times each runtime side by side with PyTorch, adds an ``export`` section to results.json and
writes MODEL_CARD.md next to the files.
"""

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from kdrun.data import TensorDataModule, build_datamodule
from kdrun.errors import KdrunConfigError
from kdrun.export.card import model_card
from kdrun.export.formats import FORMATS
from kdrun.export.parity import compare, int8_verdict, verdict
from kdrun.export.quantize import quantize_onnx
from kdrun.export.settings import check_settings, int8_settings, resolve_formats
from kdrun.files import atomic_path, write_atomic
from kdrun.measure import accuracy, latency_of
from kdrun.models import load_weights
from kdrun.models.build import build
from kdrun.progress import phase
from kdrun.report import write_json_atomic
from kdrun.strategies import STRATEGIES

FP32_ROLE = "fp32_student"  # the report row of a quantisation-aware strategy's fp32 starting point

EXPORT_DIR = "export"
# The same weights on the same test split reproduce the recorded top-1; on another machine a few
# borderline images may change class.
TOP1_TOLERANCE = 0.005


class ExportParityError(RuntimeError):
    """The exported model does not compute what the PyTorch student computes (or, for int8,
    loses more accuracy than allowed, or could not be made).

    ``results`` is the run's results with the ``export`` section that records the failure.
    """

    def __init__(self, message: str, results: dict[str, Any]) -> None:
        super().__init__(message)
        self.results = results


def load_run(
    run_dir: Path, data: TensorDataModule | None = None
) -> tuple[dict[str, Any], DictConfig, torch.nn.Module, TensorDataModule]:
    """The run's results, config, distilled student (eval mode) and data; one-line errors otherwise.

    ``data``: the run's data module when the caller still holds it (export at the end of training).
    """
    results_path, weights = run_dir / "results.json", run_dir / "student.safetensors"
    if not results_path.is_file():
        raise KdrunConfigError(
            "run_dir", str(run_dir), "has no results.json: not a kdrun train run directory"
        )
    try:
        results = json.loads(results_path.read_text())
    except json.JSONDecodeError as err:
        raise KdrunConfigError("run_dir", str(run_dir), f"results.json is corrupt ({err.msg})") from None
    if results.get("status") != "ok":
        raise KdrunConfigError(
            "run_dir",
            str(run_dir),
            f"the run did not finish (status {results.get('status')!r}); nothing to export",
        )
    if not weights.is_file():
        raise KdrunConfigError(
            "run_dir", str(run_dir), "has no student.safetensors (the distilled student's weights) to export"
        )
    cfg = OmegaConf.create(results["config"])
    if data is None:
        data = build_datamodule(cfg.dataset)
    if data.fingerprint != results["data"]["fingerprint"]:
        raise KdrunConfigError(
            "run_dir",
            str(run_dir),
            "its data set has changed since the run (fingerprint differs); parity needs it",
        )
    student = STRATEGIES[cfg.strategy.name].shipped_student(cfg, build(cfg.student, data))
    load_weights(student, weights, key="run_dir")
    student = student.eval().to(memory_format=torch.contiguous_format)
    _check_recorded_top1(run_dir, results, student, data)
    return results, cfg, student, data


def _check_recorded_top1(
    run_dir: Path, results: dict[str, Any], student: torch.nn.Module, data: TensorDataModule
) -> None:
    """student.safetensors must be the model results.json reports: its test top-1 must match."""
    measured = accuracy(student, data.loader("test", batch_size=512), data.num_classes)["top1"]
    recorded = results["student"]["top1"]
    if abs(measured - recorded) > TOP1_TOLERANCE:
        raise KdrunConfigError(
            "run_dir",
            str(run_dir),
            f"student.safetensors reaches top-1 {100 * measured:.2f}% on the test split but results.json "
            f"records {100 * recorded:.2f}%: these are not the weights of this run",
        )


def export_run(
    run_dir: Path,
    settings: DictConfig | dict[str, Any],
    data: TensorDataModule | None = None,
    written_by: str = "kdrun export",
) -> dict[str, Any]:
    """Export, check and time the run's student in ``settings['formats']``; return the run's
    results with the new ``export`` section (also written to results.json).

    Raises ``ExportParityError`` (after recording it) when an export computes something else.
    """
    check_settings(settings)
    run_dir = Path(run_dir)
    results, cfg, student, data = load_run(run_dir, data)
    check_settings(settings, train_images=len(data.splits["train"][0]))
    with phase("export", unit="formats") as progress:
        progress.describe("export: timing the PyTorch student")
        exporter = _Exporter(run_dir / EXPORT_DIR, results, cfg, student, data, settings)
        failures = []
        for name in exporter.formats:
            progress.describe(f"export: {name}", total=len(exporter.formats))
            failures += [failure] if (failure := exporter.export(name)) else []
            progress.advance()
    results["export"] = exporter.section
    write_json_atomic(run_dir / "results.json", results)
    card = run_dir / EXPORT_DIR / "MODEL_CARD.md"
    write_atomic(card, model_card(results, run_dir, data.normalization, written_by))
    if failures:
        raise ExportParityError(" | ".join(failures), results)
    return results


class _Exporter:
    """One run's student written, checked and timed in each format; ``section`` collects the
    figures for results.json."""

    def __init__(
        self,
        out: Path,
        results: dict[str, Any],
        cfg: DictConfig,
        student: torch.nn.Module,
        data: TensorDataModule,
        settings: DictConfig | dict[str, Any],
    ) -> None:
        out.mkdir(exist_ok=True)
        self.out, self.student, self.data = out, student, data
        self.threads, self.min_time = int(cfg.measure.threads), float(cfg.measure.min_run_time)
        self.inputs = {f"batch{b}": torch.randn(b, *data.input_shape) for b in cfg.measure.batch_sizes}
        self.example = data.splits["test"][0][:2]  # batch 2: a batch of 1 would be specialised away
        self.strategy = STRATEGIES[cfg.strategy.name]
        # A quantisation-aware student is its own int8 model: no fp32 file to quantise; the fp32
        # student it is compared with is the report's fp32_student row.
        quantized = self.strategy.quantized
        self.fp32_row = results.get("extra_models", {}).get(FP32_ROLE) if quantized else None
        self.formats = resolve_formats(list(settings["formats"]), quantized=quantized)
        with torch.no_grad():
            self.section: dict[str, Any] = {
                "atol": float(settings["atol"]),
                "min_top1_agreement": float(settings["min_top1_agreement"]),
                "threads": self.threads,
                "pytorch": self.timings(student),
                "formats": {},
            }
        self.int8 = int8_settings(settings)
        if any(FORMATS[name].base for name in self.formats):
            self.section["int8"] = {**self.int8, "method": "ptq", "quant_format": "QDQ", "per_channel": True}
            if quantized:
                self.section["int8"] |= {
                    "method": cfg.strategy.name,
                    "calibration_images": None,
                    "calibration_method": None,
                }

    def timings(self, fn: Any) -> dict[str, dict[str, float]]:
        """Median latency and IQR of ``fn`` at each measured batch size."""
        pairs = {b: latency_of(fn, x, self.threads, self.min_time) for b, x in self.inputs.items()}
        return {
            "latency_ms": {b: round(m, 4) for b, (m, _) in pairs.items()},
            "latency_iqr_ms": {b: None if i is None else round(i, 4) for b, (_, i) in pairs.items()},
        }

    def export(self, name: str) -> str | None:
        """Write, check and time one format into ``section``; the failure's text, if any."""
        fmt = FORMATS[name]
        path = self.out / f"student{fmt.suffix}"
        if fmt.write is not None:
            with atomic_path(path) as tmp:  # a reader never finds half a model file
                fmt.write(self.student, self.example, tmp)
            runner, parity = self._check(path, fmt)
            problem = verdict(parity, self.section["atol"], self.section["min_top1_agreement"])
        else:
            try:  # an int8 failure is recorded; the fp32 files stay valid
                with atomic_path(path) as tmp:
                    self._write_int8(fmt, tmp)
                runner, parity = self._check(path, fmt)
            except Exception as err:  # noqa: BLE001 - any quantiser/runtime error is the int8 step's
                reason = (str(err).strip().splitlines() or [""])[0][:200]
                problem = f"quantisation failed: {type(err).__name__}: {reason}"
                failed = {"format": name, "path": None, "status": "failed", "error": problem}
                self.section["formats"][name] = failed
                return f"{name}: {problem}"
            reference = self.fp32_row["top1"] if self.fp32_row else parity["top1_pytorch"]
            problem = int8_verdict(parity, float(self.int8["max_int8_drop"]), reference)
        self.section["formats"][name] = self._entry(name, path, runner, parity, problem)
        return f"{name}: {'parity check failed: ' if fmt.write else ''}{problem}" if problem else None

    def _check(self, path: Path, fmt: Any) -> tuple[Any, dict[str, Any]]:
        """The written file loaded in its runtime, and its parity with the student on the test split."""
        runner = fmt.load(path, self.threads)
        return runner, compare(self.student, runner, self.data.loader("test", batch_size=256))

    def _write_int8(self, fmt: Any, tmp: Path) -> None:
        """The int8 file: the quantisation-aware student exported, or the fp32 file quantised."""
        if self.strategy.quantized:
            FORMATS[fmt.base].write(self.strategy.exportable(self.student, self.example), self.example, tmp)
            return
        quantize_onnx(
            Path(self.section["formats"][fmt.base]["path"]),
            tmp,
            self.data.splits["train"][0][: self.int8["calibration_images"]],
            self.int8["calibration_method"],
        )

    def _entry(
        self, name: str, path: Path, runner: Any, parity: dict[str, Any], problem: str | None
    ) -> dict[str, Any]:
        """results.json's record of one written format: file, parity, latency, int8 ratios."""
        entry = {
            "format": name,
            "path": str(path),
            "file_mb": round(path.stat().st_size / 2**20, 4),
            "status": "ok" if problem is None else "failed",
            "parity": parity,
            **({"error": problem} if problem else {}),
            **self.timings(runner),
        }
        base = FORMATS[name].base
        if base is not None and self.fp32_row:
            entry |= _int8_figures(entry, self.fp32_row["top1"], None, self.fp32_row)
        elif base is not None:
            fp32 = self.section["formats"][base]
            entry |= _int8_figures(entry, parity["top1_pytorch"], fp32, self.section["pytorch"])
        return entry


def _int8_figures(
    entry: dict[str, Any], fp32_top1: float, fp32_onnx: dict[str, Any] | None, pytorch: dict[str, Any]
) -> dict[str, Any]:
    """The int8 file against the fp32 student: top-1 change, size and speed-up ratios
    (``None`` where the fp32 student has no ONNX file)."""
    ms = entry["latency_ms"]
    return {
        "top1_delta": entry["parity"]["top1"] - fp32_top1,
        "size_ratio": round(entry["file_mb"] / fp32_onnx["file_mb"], 4) if fp32_onnx else None,
        "speedup": {
            "onnx": {b: round(fp32_onnx["latency_ms"][b] / ms[b], 3) for b in ms} if fp32_onnx else None,
            "pytorch": {b: round(pytorch["latency_ms"][b] / ms[b], 3) for b in ms},
        },
    }
