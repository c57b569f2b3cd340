"""The configs ship inside the wheel: kdrun composes them when installed, run from anywhere."""

import os
import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_wheel_carries_configs_and_composes_outside_the_checkout(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("kdrun-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "kdrun/conf/train.yaml",
        "kdrun/conf/model/resnet50.yaml",
        "kdrun/conf/debug/smoke.yaml",
    } <= names

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import kdrun.cli; print(kdrun.cli.__file__); "
            "kdrun.cli.main(['train', '--cfg', 'job', 'teacher=resnet50', 'student=mobilenet_v3'])",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.splitlines()[0].startswith(str(target))  # the installed copy, not the checkout
    assert "name: resnet50" in shown.stdout and "variant: small" in shown.stdout
