"""The export formats: write an eval-mode student to a file, load the file back as a callable.

``onnx_int8`` is not written from the model: it quantises the ``onnx`` file (its ``base``).
Each format's ``load`` returns ``fn(x: Tensor) -> Tensor`` running in that format's runtime
(ONNX Runtime on CPU, the TorchScript interpreter), so parity and latency treat them alike.
"""

import contextlib
import importlib.util
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    packages: tuple[str, ...]  # import names the format needs beyond torch
    write: Callable[[nn.Module, torch.Tensor, Path], None] | None  # None: derived from ``base``
    load: Callable[[Path, int], Runner]
    base: str | None = None  # the fp32 format whose file this one quantises (kdrun.export.quantize)

    def missing(self) -> list[str]:
        return [p for p in self.packages if importlib.util.find_spec(p) is None]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No warnings, and stdout (file descriptor 1) to /dev/null: the ONNX exporter and ONNX
    Runtime's calibrators print their progress; a run's output keeps kdrun's lines only."""
    with warnings.catch_warnings(), open(os.devnull, "w") as devnull:
        warnings.simplefilter("ignore")
        stdout = os.dup(1)
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(stdout, 1)
            os.close(stdout)


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch.export-based ONNX (torch's supported exporter), batch dimension dynamic."""
    import onnx

    with quiet():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),
            external_data=False,
        )
    onnx.checker.check_model(str(path))


def _load_onnx(path: Path, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": x.contiguous().numpy()})[0])

    return run


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Traced TorchScript (every built-in model is a static graph). torch >= 2.9 deprecates
    TorchScript in favour of torch.export; it is still what many C++/mobile runtimes load."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model, example)
        traced.save(str(path))


def _load_torchscript(path: Path, threads: int) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run


ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
FORMATS = {
    "onnx": Format("onnx", ".onnx", ONNX_PACKAGES, _write_onnx, _load_onnx),
    "torchscript": Format("torchscript", ".torchscript.pt", (), _write_torchscript, _load_torchscript),
    # Static post-training quantisation of the fp32 ONNX file, run by ONNX Runtime like it.
    "onnx_int8": Format("onnx_int8", ".int8.onnx", ONNX_PACKAGES, None, _load_onnx, base="onnx"),
}
EXTRA = "pip install 'kdrun[export]'"
