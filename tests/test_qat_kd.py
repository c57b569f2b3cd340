"""strategy=qat_kd: quantisation-aware distillation, shipped as int8 ONNX."""

import json
from pathlib import Path

import pytest
import torch
from conftest import make_cfg, run_kdrun

from kdrun.errors import KdrunConfigError
from kdrun.models.small import MLP
from kdrun.strategies.qat_kd import exportable_qat, quantization_aware
from kdrun.train.validate import validate

pytest.importorskip("onnxruntime", reason="the export extra (pip install 'kdrun[export]') is not installed")


def test_exportable_form_computes_what_the_fake_quantised_model_computes() -> None:
    """The QDQ-constant copy (int8 weights) gives the eval-mode QAT model's logits, and evaluation
    never moves a learned range."""
    torch.manual_seed(0)
    model = quantization_aware(MLP(16, 4, hidden=[8]), "x86")
    x = torch.randn(32, 1, 4, 4)
    model.train()(x)  # observe: ranges are learned in training
    model.eval()
    scales = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("scale")}
    with torch.no_grad():
        reference = model(x * 10)  # far outside the observed range
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in scales.items())
    exported = exportable_qat(model, x[:2])
    int8 = [b for b in exported.buffers() if b.dtype == torch.int8]
    assert sum(b.numel() for b in int8) == 16 * 8 + 8 * 4  # both weight matrices, as int8
    assert torch.allclose(exported(x * 10), reference, atol=1e-5)


def test_qat_kd_refuses_fp32_export_formats_before_training(tiny_data) -> None:
    from kdrun.strategies.qat_kd import QatKD

    with pytest.raises(KdrunConfigError, match="export.formats='onnx': strategy=qat_kd ships its int8"):
        QatKD.preflight(make_cfg("strategy=qat_kd", "export=all"), tiny_data)
    with pytest.raises(KdrunConfigError, match="strategy.qat_epochs=0: must be an integer >= 1"):
        validate(make_cfg("strategy=qat_kd", "strategy.qat_epochs=0"))  # the strategy's schema
    with pytest.raises(KdrunConfigError, match="strategy.backend='arm': allowed: x86, fbgemm, qnnpack"):
        validate(make_cfg("strategy=qat_kd", "strategy.backend=arm"))


@pytest.mark.slow  # a whole smoke run: teacher, baseline, fp32 student, QAT fine-tuning, export
def test_qat_kd_smoke_run_ships_an_int8_student(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    proc = run_kdrun(
        ["train", "debug=smoke", "threads=1", "strategy=qat_kd", "strategy.qat_epochs=1", "export=onnx_int8"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["strategy"]["name"] == "qat_kd" and results["strategy"]["qat_epochs"] == 1
    fp32 = results["extra_models"]["fp32_student"]
    assert fp32["name"] == results["student"]["name"] == "mlp"
    section = results["export"]
    assert list(section["formats"]) == ["onnx_int8"]  # the student is its own int8 model
    assert section["int8"]["method"] == "qat_kd" and section["int8"]["calibration_images"] is None
    entry = section["formats"]["onnx_int8"]
    assert entry["status"] == "ok", entry.get("error")
    path = Path(entry["path"])
    graph = onnx.load(str(path)).graph
    assert "QuantizeLinear" in {n.op_type for n in graph.node}
    assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)  # int8 weights
    assert entry["file_mb"] < 0.5 * fp32["size_mb"]
    # The int8 file runs any batch size; its top-1, recomputed, is the recorded one.
    from kdrun.export.command import load_run

    _, _, _, data = load_run(run_dir)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, y = data.splits["test"][0][:], data.splits["test"][1]
    assert session.run(None, {"input": x[:3].numpy()})[0].shape == (3, data.num_classes)
    (logits,) = session.run(None, {"input": x.numpy()})
    top1 = int((torch.from_numpy(logits).argmax(1) == y).sum()) / len(y)
    assert entry["parity"]["top1"] == pytest.approx(top1, abs=1e-9)
    assert entry["parity"]["top1_pytorch"] == pytest.approx(results["student"]["top1"], abs=1e-6)
    assert entry["top1_delta"] == pytest.approx(top1 - fp32["top1"], abs=1e-6)  # vs the fp32 student
    assert entry["speedup"]["onnx"] is None
    assert entry["speedup"]["pytorch"]["batch64"] == pytest.approx(
        fp32["latency_ms"]["batch64"] / entry["latency_ms"]["batch64"], rel=1e-2
    )
    card = (run_dir / "export" / "MODEL_CARD.md").read_text()
    assert "## int8 student (ONNX Runtime, quantisation-aware distillation)" in card
    assert f"| student (int8) | {100 * top1:.2f} | {100 * entry['top1_delta']:+.2f} |" in card
    assert "student (int8)" in proc.stdout and "fp32_student" in proc.stdout
