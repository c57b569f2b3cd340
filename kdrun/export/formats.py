"""The export formats: write an eval-mode student to a file, load the file back as a callable.

Each format's ``load`` returns ``fn(x: Tensor) -> Tensor`` running in that format's runtime
(ONNX Runtime on CPU, the TorchScript interpreter), so parity and latency treat them alike.
"""

import importlib.util
import os
import warnings
from collections.abc import Callable
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
    write: Callable[[nn.Module, torch.Tensor, Path], None]
    load: Callable[[Path, int], Runner]

    def missing(self) -> list[str]:
        return [p for p in self.packages if importlib.util.find_spec(p) is None]


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch.export-based ONNX (torch's supported exporter), batch dimension dynamic."""
    import onnx

    with warnings.catch_warnings(), open(os.devnull, "w") as devnull:
        warnings.simplefilter("ignore")
        # The exporter prints its progress to stdout; a run's output keeps kdrun's lines only.
        stdout = os.dup(1)
        os.dup2(devnull.fileno(), 1)
        try:
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
        finally:
            os.dup2(stdout, 1)
            os.close(stdout)
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


FORMATS = {
    "onnx": Format("onnx", ".onnx", ("onnx", "onnxruntime", "onnxscript"), _write_onnx, _load_onnx),
    "torchscript": Format("torchscript", ".torchscript.pt", (), _write_torchscript, _load_torchscript),
}
EXTRA = "pip install 'kdrun[export]'"
