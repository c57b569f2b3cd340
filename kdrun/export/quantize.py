"""int8 ONNX by static post-training quantisation with ONNX Runtime's quantisation tools.

The fp32 ONNX file is pre-processed (shape inference, graph optimisation), then quantised in
the QDQ format: weights int8 per output channel, activations uint8 (U8S8) with ranges calibrated
on training images (min-max, entropy or percentile). Ops ONNX Runtime cannot quantise stay float.
"""

from collections.abc import Iterator
from pathlib import Path

import torch

from kdrun.export.formats import quiet

CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
MIN_CALIBRATION_IMAGES = 32  # fewer gives activation ranges that swing with each image
CALIBRATION_BATCH = 32


def quantize_onnx(fp32: Path, out: Path, images: torch.Tensor, method: str) -> None:
    """Quantise the fp32 ONNX file ``fp32`` to ``out`` (QDQ, per-channel int8 weights),
    calibrating activation ranges on ``images`` ``(N, C, H, W)`` with ``method``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[torch.Tensor] = iter(images.split(CALIBRATION_BATCH))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch.contiguous().numpy()}

    prepared = out.with_name(f".{out.name}.pre")
    try:
        with quiet():  # the calibrators print their progress
            quant_pre_process(str(fp32), str(prepared))
            quantize_static(
                str(prepared),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                # U8S8: uint8 activations, int8 weights. S8S8 (ONNX Runtime's default) ran
                # mobilenet_v3 20-30x slower than fp32 on an AVX-512 VNNI CPU (docs/cli/export.md).
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[method]),
            )
    finally:
        prepared.unlink(missing_ok=True)
