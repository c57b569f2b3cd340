"""``kdrun export RUN_DIR``: ship a finished run's student as ONNX / TorchScript."""

import argparse
from importlib.resources import files
from pathlib import Path

from omegaconf import OmegaConf

from kdrun.commands import COMMANDS
from kdrun.console import fail_run
from kdrun.export import FORMATS, ExportParityError, export_run
from kdrun.train.pipeline import show_results


def main(args: list[str]) -> None:
    """Export, check parity, time, and record in results.json; exit 1 when parity fails."""
    options = _parser().parse_args(args)
    formats = options.formats or ["onnx"]
    formats = list(FORMATS) if "all" in formats else list(dict.fromkeys(formats))
    settings = {
        "formats": formats,
        "atol": options.atol,
        "min_top1_agreement": options.min_agreement,
        "calibration_images": options.calibration_images,
        "calibration_method": options.calibration_method,
        "max_int8_drop": options.max_int8_drop,
    }
    try:
        results = export_run(options.run_dir, settings)
    except ExportParityError as err:
        show_results(err.results, options.run_dir)
        fail_run(f"export: {err} (details in {options.run_dir / 'results.json'})")
    show_results(results, options.run_dir)


def _parser() -> argparse.ArgumentParser:
    """The options, with the defaults of ``export=`` (conf/export/none.yaml)."""
    defaults = OmegaConf.load(str(files("kdrun.conf") / "export" / "none.yaml"))
    parser = argparse.ArgumentParser(
        prog="kdrun export",
        description=COMMANDS["export"],
        epilog="Writes <run dir>/export/student.<format>, MODEL_CARD.md, and `export` in results.json.",
    )
    parser.add_argument("run_dir", type=Path, help="a finished `kdrun train` run directory")
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=[*FORMATS, "all"],
        help="repeat for several formats; 'onnx' when none is given",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=defaults.atol,
        help="max |logit difference| allowed (default: %(default)s)",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=defaults.min_top1_agreement,
        help="min fraction of test images with the same top-1 class (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=defaults.calibration_images,
        help="onnx_int8: training images that calibrate activation ranges (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration-method",
        default=defaults.calibration_method,
        help="onnx_int8: minmax | entropy | percentile (default: %(default)s)",
    )
    parser.add_argument(
        "--max-int8-drop",
        type=float,
        default=defaults.max_int8_drop,
        help="onnx_int8: largest top-1 drop (points) below the fp32 student (default: %(default)s)",
    )
    return parser
