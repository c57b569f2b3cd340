"""`kdrun export` and `kdrun train export=...`: files, parity, latency, model card, clear failures."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_cfg, run_kdrun
from safetensors.torch import save_file

from kdrun.errors import KdrunConfigError
from kdrun.export import FORMATS, ExportParityError, check_settings, export_run
from kdrun.export import formats as formats_module
from kdrun.export.formats import Format
from kdrun.models.build import model_spec
from kdrun.models.factory import create_model
from kdrun.strategies.hydra_heads import HydraHeads

pytest.importorskip("onnxruntime", reason="the export extra (pip install 'kdrun[export]') is not installed")


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """One smoke run that exports to every format (fp32 ONNX, TorchScript, int8 ONNX) at the end
    of training."""
    cwd = tmp_path_factory.mktemp("export")
    proc = run_kdrun(
        ["train", "debug=smoke", "threads=1", "export=all", f"paths.cache_dir={shared_cache}"], cwd
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (cwd / "outputs" / "runs").iterdir()
    return run_dir


@pytest.fixture(scope="module")
def run_data(exported_run: Path):
    """The exported run's student (eval mode) and data, rebuilt once for the module."""
    from kdrun.export.command import load_run

    _, _, student, data = load_run(exported_run)
    return student, data


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_train_export_writes_both_formats_with_parity_and_latency(exported_run: Path) -> None:
    results = _results(exported_run)
    section = results["export"]
    assert set(section["formats"]) == {"onnx", "torchscript", "onnx_int8"}
    for name in ("onnx", "torchscript"):
        entry = section["formats"][name]
        path = Path(entry["path"])
        assert path.is_file() and path.parent == exported_run / "export", name
        assert entry["status"] == "ok"
        parity = entry["parity"]
        assert parity["images"] == results["data"]["test"]
        assert parity["max_abs_diff"] <= section["atol"]
        assert parity["top1_agreement"] >= section["min_top1_agreement"]
        # The exported model scores what the PyTorch student scored on the same test split.
        assert parity["top1"] == pytest.approx(results["student"]["top1"], abs=1e-6)
        assert set(entry["latency_ms"]) == {"batch1", "batch64"}
        assert all(v > 0 for v in entry["latency_ms"].values())
    assert set(section["pytorch"]["latency_ms"]) == {"batch1", "batch64"}
    assert not list((exported_run / "export").glob(".*tmp"))  # no temp file left behind


def test_onnx_file_has_a_dynamic_batch_and_matches_the_student(exported_run: Path, run_data) -> None:
    import onnxruntime as ort

    student, data = run_data
    session = ort.InferenceSession(str(exported_run / "export" / "student.onnx"))
    for batch in (1, 3, 17):
        x = data.splits["test"][0][:batch]
        (logits,) = session.run(None, {"input": x.numpy()})
        assert logits.shape == (batch, data.num_classes)
        assert torch.allclose(torch.from_numpy(logits), student(x).detach(), atol=1e-4)


def test_model_card_lists_the_numbers_of_results_json(exported_run: Path) -> None:
    results = _results(exported_run)
    card = (exported_run / "export" / "MODEL_CARD.md").read_text()
    for role, label in (
        ("teacher", "teacher"),
        ("baseline", "scratch student"),
        ("student", "distilled student"),
    ):
        row = results[role]
        match = re.search(rf"^\| {label} \| {row['name']} \| ([\d.]+) \|", card, re.M)
        assert match, label
        assert float(match.group(1)) == pytest.approx(100 * row["top1"], abs=0.005)
    cfg = results["config"]
    assert f"T = {cfg['T']:g}, α = {cfg['alpha']:g}" in card
    assert f"seed {results['seed']}" in card
    assert "- Trained on: cpu (CPU, 1 thread), precision `32-true`, deterministic `true`" in card
    assert "101.77k parameters" in card  # the mlp student of the default job
    assert f"{results['export']['formats']['onnx']['parity']['max_abs_diff']:.2e}" in card
    onnx_ms = results["export"]["formats"]["onnx"]["latency_ms"]["batch1"]
    assert re.search(rf"\| ONNX Runtime \(onnx\) \| {onnx_ms:.3f} ", card)
    assert "kdrun train debug=smoke threads=1 export=all" in card  # the reproducing command
    assert str(exported_run.parent) not in card  # no absolute paths: the run by its folder name
    assert "Written by `kdrun train export=all`" in card
    assert "pixel values scaled to [0, 1]" in card
    # The teacher's Δ as on the console: a cached or loaded teacher has no scratch twin.
    if "scratch" not in results["teacher"]:
        assert re.search(r"^\| teacher \| \w+ \| [\d.]+ \| - \|", card, re.M), card


def test_cli_export_reexports_a_finished_run(exported_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(exported_run, run_dir)
    shutil.rmtree(run_dir / "export")
    proc = run_kdrun(["export", str(run_dir), "--format", "torchscript"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "export" / "student.torchscript.pt").is_file()
    assert not (run_dir / "export" / "student.onnx").exists()
    assert set(_results(run_dir)["export"]["formats"]) == {"torchscript"}
    assert "student (torchscript)" in proc.stdout  # a row of the results table


def test_export_without_student_weights_fails_clearly(exported_run: Path, tmp_path: Path, capsys) -> None:
    from kdrun.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(exported_run, run_dir)
    (run_dir / "student.safetensors").unlink()
    with pytest.raises(SystemExit) as info:
        main(["export", str(run_dir)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "has no student.safetensors" in err
    with pytest.raises(KdrunConfigError, match="has no results.json"):
        export_run(tmp_path, {"formats": ["onnx"], "atol": 1e-3, "min_top1_agreement": 0.999})


def test_export_rebuilds_the_data_under_any_thread_count(exported_run: Path, tmp_path: Path) -> None:
    """Normalisation sums in float64 in a fixed order: the data rebuilt under another torch thread
    count has the run's fingerprint, so the run records no thread count for the export."""
    run_dir = tmp_path / "run"
    shutil.copytree(exported_run, run_dir)
    assert "build_threads" not in _results(run_dir)["data"]
    before = torch.get_num_threads()
    torch.set_num_threads(1 if before != 1 else 2)
    try:
        export_run(run_dir, {"formats": ["torchscript"], "atol": 1e-3, "min_top1_agreement": 0.999})
    finally:
        torch.set_num_threads(before)
    assert _results(run_dir)["export"]["formats"]["torchscript"]["status"] == "ok"


def test_export_refuses_a_run_whose_data_changed(exported_run: Path, tmp_path: Path) -> None:
    """Parity needs the run's own test images: another fingerprint is refused, nothing written."""
    run_dir = tmp_path / "run"
    shutil.copytree(exported_run, run_dir)
    shutil.rmtree(run_dir / "export")
    results = _results(run_dir)
    results["data"]["fingerprint"] = "0" * 16
    (run_dir / "results.json").write_text(json.dumps(results))
    with pytest.raises(KdrunConfigError, match="its data set has changed since the run"):
        export_run(run_dir, {"formats": ["torchscript"], "atol": 1e-3, "min_top1_agreement": 0.999})
    assert not (run_dir / "export").exists()


def test_export_of_a_failed_run_is_refused(exported_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(exported_run, run_dir)
    results = _results(run_dir)
    (run_dir / "results.json").write_text(json.dumps({**results, "status": "failed"}))
    with pytest.raises(KdrunConfigError, match="did not finish"):
        export_run(run_dir, {"formats": ["torchscript"], "atol": 1e-3, "min_top1_agreement": 0.999})


def test_parity_failure_is_recorded_and_raised(
    exported_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime that computes something else (here: logits + 0.5) fails the check, with the figures."""
    run_dir = tmp_path / "run"
    shutil.copytree(exported_run, run_dir)
    real = FORMATS["torchscript"]

    def load_off(path: Path, threads: int):
        runner = real.load(path, threads)
        return lambda x: runner(x) + 0.5

    monkeypatch.setitem(formats_module.FORMATS, "torchscript", Format(**{**real.__dict__, "load": load_off}))
    settings = {"formats": ["torchscript"], "atol": 1e-3, "min_top1_agreement": 0.999}
    with pytest.raises(ExportParityError, match=r"max \|logit difference\| 0.5 > export.atol=0.001"):
        export_run(run_dir, settings)
    entry = _results(run_dir)["export"]["formats"]["torchscript"]
    assert entry["status"] == "failed"
    assert entry["parity"]["max_abs_diff"] == pytest.approx(0.5, abs=1e-5)
    assert entry["parity"]["top1_agreement"] == 1.0  # a constant shift keeps every arg-max


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"formats": ["tflite"], "atol": 1e-3, "min_top1_agreement": 0.9},
            "export.formats='tflite': allowed",
        ),
        ({"formats": ["onnx"], "atol": 0, "min_top1_agreement": 0.9}, "export.atol=0: must be a number > 0"),
        ({"formats": ["onnx"], "atol": 1e-3, "min_top1_agreement": 1.5}, "export.min_top1_agreement=1.5"),
    ],
)
def test_bad_export_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(KdrunConfigError) as err:
        check_settings(settings)
    assert str(err.value).startswith(message)


def test_missing_onnx_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without onnxruntime, `kdrun train export=onnx` stops at validation with the pip command."""
    from kdrun.train.validate import validate

    real_find_spec = formats_module.importlib.util.find_spec
    monkeypatch.setattr(
        formats_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a),
    )
    with pytest.raises(
        KdrunConfigError, match=r"needs the packages onnxruntime: pip install 'kdrun\[export\]'"
    ):
        validate(make_cfg("export=onnx"))
    validate(make_cfg("export=torchscript"))  # TorchScript needs nothing beyond torch


def test_hydra_heads_student_is_rebuilt_for_export(tmp_path: Path) -> None:
    """The shipped architecture of a reshaping strategy (k heads) loads the trained weights exactly."""
    cfg = make_cfg("strategy=hydra_heads", "teacher=ensemble", "teacher.members=3")
    spec = model_spec(cfg.student)
    trained = HydraHeads.shipped_student(cfg, create_model(spec, 10, (1, 28, 28)))
    torch.nn.init.normal_(trained.heads[2].weight)  # heads differ, so a mix-up would show
    path = tmp_path / "student.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    from kdrun.models import load_weights

    rebuilt = load_weights(
        HydraHeads.shipped_student(cfg, create_model(spec, 10, (1, 28, 28))), path, "run_dir"
    )
    x = torch.randn(4, 1, 28, 28)
    assert len(rebuilt.heads) == 3
    assert torch.equal(rebuilt(x), trained(x))


# ---- int8 (static post-training quantisation with ONNX Runtime) ---------------------------------


def test_int8_model_runs_any_batch_and_its_recorded_top1_recomputes(exported_run: Path, run_data) -> None:
    """The int8 file takes any batch size; its top-1 over the test split, recomputed here with
    ONNX Runtime, is the one recorded; the ratios are the recorded latencies' and sizes'."""
    import onnx
    import onnxruntime as ort

    results = _results(exported_run)
    section = results["export"]
    entry, fp32 = section["formats"]["onnx_int8"], section["formats"]["onnx"]
    path = Path(entry["path"])
    assert entry["status"] == "ok" and path == exported_run / "export" / "student.int8.onnx"
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    assert entry["file_mb"] < 0.5 * fp32["file_mb"]  # int8 weights
    assert section["int8"] == {
        "calibration_images": 256,
        "calibration_method": "minmax",
        "max_int8_drop": 1.0,
        "method": "ptq",
        "quant_format": "QDQ",
        "per_channel": True,
    }
    data = run_data[1]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, y = data.splits["test"][0][:], data.splits["test"][1]
    for batch in (1, 3, 17):
        (logits,) = session.run(None, {"input": x[:batch].numpy()})
        assert logits.shape == (batch, data.num_classes)
    (logits,) = session.run(None, {"input": x.numpy()})
    top1 = int((torch.from_numpy(logits).argmax(1) == y).sum()) / len(y)
    parity = entry["parity"]
    assert parity["images"] == len(y)
    assert parity["top1"] == pytest.approx(top1, abs=1e-9)
    assert parity["top1_pytorch"] == pytest.approx(results["student"]["top1"], abs=1e-6)
    assert entry["top1_delta"] == pytest.approx(parity["top1"] - results["student"]["top1"], abs=1e-6)
    assert 100 * -entry["top1_delta"] <= section["int8"]["max_int8_drop"]
    for b in ("batch1", "batch64"):
        ms = entry["latency_ms"][b]
        assert entry["speedup"]["onnx"][b] == pytest.approx(fp32["latency_ms"][b] / ms, rel=1e-2)
        assert entry["speedup"]["pytorch"][b] == pytest.approx(
            section["pytorch"]["latency_ms"][b] / ms, rel=1e-2
        )


def _int8_rows(card: str) -> dict[str, list[str]]:
    """The rows of the card's int8 table, by model label."""
    part = card.split("## int8 student", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in part.splitlines() if line.startswith("| student")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_model_card_int8_rows_match_results_json(exported_run: Path) -> None:
    results = _results(exported_run)
    section = results["export"]
    entry, fp32 = section["formats"]["onnx_int8"], section["formats"]["onnx"]
    rows = _int8_rows((exported_run / "export" / "MODEL_CARD.md").read_text())
    assert set(rows) == {"student (int8)", "student (fp32, ONNX Runtime)"}
    top1, delta, mb, ms1, ms64, onnx1, onnx64, torch1, torch64 = map(float, rows["student (int8)"])
    assert top1 == pytest.approx(100 * entry["parity"]["top1"], abs=0.0051)
    assert delta == pytest.approx(100 * entry["top1_delta"], abs=0.0051)
    assert mb == pytest.approx(entry["file_mb"], abs=0.0051)
    assert (ms1, ms64) == pytest.approx(list(entry["latency_ms"].values()), abs=6e-4)
    assert (onnx1, onnx64) == pytest.approx(list(entry["speedup"]["onnx"].values()), abs=0.0051)
    assert (torch1, torch64) == pytest.approx(list(entry["speedup"]["pytorch"].values()), abs=0.0051)
    assert float(rows["student (fp32, ONNX Runtime)"][0]) == pytest.approx(
        100 * fp32["parity"]["top1"], abs=0.005
    )
    assert (
        f"calibrated (minmax) on the first {section['int8']['calibration_images']}"
        in (exported_run / "export" / "MODEL_CARD.md").read_text()
    )


def _reuse_fp32_onnx(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fp32 ONNX file is written by copying the run's own (torch.export takes seconds)."""
    fp32 = run_dir / "export" / "student.onnx"
    saved = fp32.with_name("fp32.onnx.saved")
    shutil.copy(fp32, saved)
    real = FORMATS["onnx"]
    monkeypatch.setitem(
        formats_module.FORMATS,
        "onnx",
        Format(**{**real.__dict__, "write": lambda m, e, p: shutil.copy(saved, p)}),
    )


def test_int8_accuracy_drop_beyond_the_bound_is_recorded_and_exits_1(
    exported_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An int8 model that loses accuracy (here: its logits reversed) fails `kdrun export` with
    exit 1; results.json keeps the figures, the fp32 file still passes."""
    from kdrun.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(exported_run, run_dir)
    _reuse_fp32_onnx(run_dir, monkeypatch)
    real = FORMATS["onnx_int8"]

    def load_reversed(path: Path, threads: int):
        runner = real.load(path, threads)
        return lambda x: -runner(x)

    monkeypatch.setitem(
        formats_module.FORMATS, "onnx_int8", Format(**{**real.__dict__, "load": load_reversed})
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(run_dir), "--format", "onnx_int8", "--max-int8-drop", "0.5"])
    assert exit_info.value.code == 1
    section = _results(run_dir)["export"]
    assert list(section["formats"]) == ["onnx", "onnx_int8"]  # the fp32 file it quantises comes first
    assert section["formats"]["onnx"]["status"] == "ok"
    entry = section["formats"]["onnx_int8"]
    assert entry["status"] == "failed"
    assert entry["error"].startswith("int8 top-1 drop ") and entry["error"].endswith(
        "> export.max_int8_drop=0.5"
    )
    assert section["int8"]["max_int8_drop"] == 0.5


def test_int8_quantisation_error_is_recorded_and_the_fp32_export_still_ships(
    exported_run: Path, run_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kdrun.export import command

    run_dir = tmp_path / "run"
    shutil.copytree(exported_run, run_dir)
    _reuse_fp32_onnx(run_dir, monkeypatch)
    for path in (run_dir / "export").glob("student*"):
        path.unlink()

    def broken(*args, **kwargs):
        raise RuntimeError("no int8 kernel for op Foo\nmore detail")

    monkeypatch.setattr(command, "quantize_onnx", broken)
    settings = {"formats": ["onnx_int8"], "atol": 1e-3, "min_top1_agreement": 0.999}
    with pytest.raises(
        ExportParityError, match="onnx_int8: quantisation failed: RuntimeError: no int8 kernel"
    ):
        export_run(run_dir, settings, data=run_data[1])
    section = _results(run_dir)["export"]
    assert section["formats"]["onnx"]["status"] == "ok"
    assert (run_dir / "export" / "student.onnx").is_file()
    assert section["formats"]["onnx_int8"] == {
        "format": "onnx_int8",
        "path": None,
        "status": "failed",
        "error": "quantisation failed: RuntimeError: no int8 kernel for op Foo",
    }
    assert sorted(p.name for p in (run_dir / "export").glob("*.*onnx")) == ["student.onnx"]
    assert not list((run_dir / "export").glob(".*"))  # no temp file left behind
    rows = _int8_rows((run_dir / "export" / "MODEL_CARD.md").read_text())
    assert rows["student (int8)"][0].startswith("not produced: quantisation failed")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"calibration_method": "entropie"},
            "export.calibration_method='entropie': allowed: minmax, entropy, percentile (closest: entropy)",
        ),
        ({"calibration_images": 8}, "export.calibration_images=8: must be an integer >= 32"),
        ({"max_int8_drop": -1}, "export.max_int8_drop=-1: must be a number >= 0"),
        (
            {"formats": ["onnx_int9"]},
            "export.formats='onnx_int9': allowed: onnx, torchscript, onnx_int8 (closest: onnx_int8)",
        ),
    ],
)
def test_bad_int8_settings_are_refused(extra: dict, message: str) -> None:
    with pytest.raises(KdrunConfigError) as err:
        check_settings({"formats": ["onnx_int8"], "atol": 1e-3, "min_top1_agreement": 0.9, **extra})
    assert str(err.value).startswith(message)


def test_more_calibration_images_than_training_images_stop_before_training() -> None:
    from kdrun.train.prepare import prepare

    cfg = make_cfg("debug=smoke", "export=onnx_int8", "export.calibration_images=5000")
    with pytest.raises(
        KdrunConfigError, match=r"export.calibration_images=5000: must be an integer >= 32 and <= \d+ "
    ):
        prepare(cfg)
    # Without an int8 format the calibration images are not used, so not checked against the split.
    check_settings(
        {"formats": ["onnx"], "atol": 1e-3, "min_top1_agreement": 0.9, "calibration_images": 5000},
        train_images=358,
    )
