"""MODEL_CARD.md's int8 section: the int8 student next to the fp32 one."""

from typing import Any


def int8_lines(export: dict[str, Any], batches: list[str]) -> list[str]:
    """The int8 student next to the fp32 one: accuracy, size, latency, speed-ups."""
    entries = {name: e for name, e in export["formats"].items() if name.endswith("_int8")}
    if not entries:
        return []
    at = [b.removeprefix("batch") for b in batches]
    title, how = _int8_method(export["int8"])
    lines = [
        "",
        f"## int8 student (ONNX Runtime, {title})",
        "",
        f"{how} Top-1 on the same test images as the fp32 student; latency in the same "
        f"process, {export['threads']} thread(s).",
        "",
        "| model | top-1 % | Δ vs fp32 student (pts) | MB | "
        + " | ".join(f"ms @{b}" for b in at)
        + " | "
        + " | ".join(f"speed-up vs fp32 ONNX Runtime @{b}" for b in at)
        + " | "
        + " | ".join(f"speed-up vs PyTorch @{b}" for b in at)
        + " |",
        "|---|" + "---:|" * (3 + 3 * len(at)),
    ]
    fp32 = export["formats"].get("onnx")
    if fp32 and "parity" in fp32:
        torch_ms, parity = export["pytorch"]["latency_ms"], fp32["parity"]
        lines.append(
            f"| student (fp32, ONNX Runtime) | {100 * parity['top1']:.2f} | "
            f"{100 * (parity['top1'] - parity['top1_pytorch']):+.2f} | {fp32['file_mb']:.2f} | "
            + _cells(
                [f"{fp32['latency_ms'][b]:.3f}" for b in batches]
                + ["1.00" for _ in batches]
                + [f"{torch_ms[b] / fp32['latency_ms'][b]:.2f}" for b in batches]
            )
        )
    lines += [_int8_row(entry, batches) for entry in entries.values()]
    return lines


def _int8_method(int8: dict[str, Any]) -> tuple[str, str]:
    """How the int8 file was made: a title and one sentence."""
    if int8["method"] == "ptq":
        return (
            "static post-training quantisation",
            f"Quantised by ONNX Runtime's tools: {int8['quant_format']} format, int8 weights "
            f"{'per output channel' if int8['per_channel'] else 'per tensor'}, uint8 activations with "
            f"ranges calibrated ({int8['calibration_method']}) on the first {int8['calibration_images']} "
            "training images.",
        )
    return (
        "quantisation-aware distillation",
        "Fine-tuned with fake int8 quantisation while distilling from the teacher "
        f"(`strategy={int8['method']}`), exported as {int8['quant_format']} with the learned "
        "ranges (int8 weights per output channel). The fp32 student is the report's "
        "`fp32_student` row (its latency in PyTorch).",
    )


def _int8_row(entry: dict[str, Any], batches: list[str]) -> str:
    """One int8 file's row, or why it was not produced."""
    if "parity" not in entry:
        return f"| student (int8) | not produced: {entry['error']} |"
    speedup = entry["speedup"]
    return (
        f"| student (int8) | {100 * entry['parity']['top1']:.2f} | {100 * entry['top1_delta']:+.2f} | "
        f"{entry['file_mb']:.2f} | "
        + _cells(
            [f"{entry['latency_ms'][b]:.3f}" for b in batches]
            + [f"{speedup['onnx'][b]:.2f}" if speedup["onnx"] else "-" for b in batches]
            + [f"{speedup['pytorch'][b]:.2f}" for b in batches]
        )
    )


def _cells(values: list[str]) -> str:
    """The last cells of a Markdown table row."""
    return " | ".join(values) + " |"
