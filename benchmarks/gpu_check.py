"""The device part of the GPU check: run on a machine with a CUDA GPU, from the repository root.

    python benchmarks/gpu_check.py [--out DIR]

Checks what the CPU-only test suite can only check by construction (docs/performance.md, "GPU"):

1. the device tests on the GPU (``tests/test_device.py``, ``tests/test_device_paths.py``: every
   strategy's step on CUDA, no per-step copies, deterministic algorithms raising exactly where
   PyTorch's documented list says);
2. the default job (``debug=smoke``) resolves ``auto`` to cuda, bf16-mixed where native, and
   deterministic ``warn``: its first line and results.json say so, and the rows carry a latency
   on the GPU next to the CPU one;
3. a hints run (resnet18 -> mobilenet_v3) trains with the default, and fails with
   ``trainer.deterministic=true`` at the interpolation backward, as documented;
4. the CUDA-trained student exports to ONNX (rebuilt on the CPU) and passes parity;
5. with two GPUs, a 2-process DDP run (spawn, nccl).

Prints one line per check and exits 1 when any fails.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

KDRUN = [sys.executable, "-m", "kdrun"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True)


def _train(out: Path, name: str, *overrides: str) -> tuple[subprocess.CompletedProcess, dict]:
    run_dir = out / name
    done = _run([*KDRUN, "train", "debug=smoke", f"hydra.run.dir={run_dir}", *overrides], out)
    results = run_dir / "results.json"
    return done, json.loads(results.read_text()) if results.is_file() else {}


def checks(out: Path, repo: Path) -> list[tuple[str, bool, str]]:
    """(check, passed, detail) for each check."""
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    precision = "bf16-mixed" if bf16 else "32-true"
    found = []

    tests = _run(
        [sys.executable, "-m", "pytest", "-q", "tests/test_device.py", "tests/test_device_paths.py"], repo
    )
    found.append(("device tests on CUDA", tests.returncode == 0, tests.stdout.strip().splitlines()[-1]))

    done, results = _train(out, "default")
    first = done.stdout.splitlines()[0] if done.stdout else ""
    device = results.get("device", {})
    ok = (
        done.returncode == 0
        and first.startswith("device: cuda")
        and (device.get("accelerator"), device.get("precision"), device.get("deterministic"))
        == ("cuda", precision, "warn")
        and "device_latency_ms" in results.get("student", {})
    )
    found.append(("default job: cuda, " + precision + ", warn", ok, first or done.stderr[-300:]))

    pair = ("strategy=hints", "teacher=resnet18", "student=mobilenet_v3")
    done, results = _train(out, "hints", *pair)
    found.append(("hints run, deterministic auto (warn)", done.returncode == 0, results.get("status", "")))
    done, results = _train(out, "hints_deterministic", *pair, "trainer.deterministic=true")
    error = results.get("error", "")
    raised = done.returncode != 0 and "does not have a deterministic implementation" in error
    found.append(("hints run, deterministic true raises as documented", raised, error[:200]))

    export = _run([*KDRUN, "export", str(out / "default"), "--format", "onnx"], out)
    found.append(("CUDA-trained student -> ONNX, parity", export.returncode == 0, export.stderr[-300:]))

    if torch.cuda.device_count() >= 2:
        done, results = _train(out, "ddp", "trainer.strategy=ddp", "trainer.devices=2")
        found.append(("2-GPU DDP (spawn, nccl)", done.returncode == 0, results.get("status", "")))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temp dir)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: PyTorch sees no CUDA GPU here; nothing to check", file=sys.stderr)
        return 2
    print(
        f"gpu_check: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, torch {torch.__version__}"
    )
    repo = Path(__file__).resolve().parents[1]
    out = args.out or Path(tempfile.mkdtemp(prefix="kdrun-gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    found = checks(out, repo)
    for name, ok, detail in found:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return 0 if all(ok for _, ok, _ in found) else 1


if __name__ == "__main__":
    sys.exit(main())
