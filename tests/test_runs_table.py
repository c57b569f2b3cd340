"""`kdrun runs`: filters that name no key are refused; equal numbers are not differences; paths whole."""

import io

import pytest
from rich.console import Console

from kdrun.errors import KdrunConfigError
from kdrun.report.runs import differing_keys, runs_table, select


def _run(T, alpha=0.9, run_dir="outputs/runs/2026-01-01_00-00-00.000000-abcdef"):
    config = {"T": T, "alpha": alpha, "teacher": {"name": "cnn"}, "student": {"name": "mlp", "epochs": 2}}
    return {"status": "ok", "config": config, "run_dir": run_dir, "overrides": []}


def test_a_filter_on_a_key_no_run_has_is_refused_with_the_closest_name():
    with pytest.raises(KdrunConfigError, match="did you mean alpha"):
        select([_run(4.0)], ["alpah=0.5"])
    assert select([_run(4.0), _run(2.0)], ["T=4"]) == [_run(4.0)]  # a known key still filters


def test_the_same_number_spelt_4_and_4_0_is_not_a_difference():
    assert differing_keys([_run(4.0), _run(4)]) == {}
    assert differing_keys([_run(4.0), _run(2)]) == {"T": [4.0, 2]}


def test_a_run_folder_is_never_wrapped_mid_name():
    folder = "outputs/some/rather/long/sweep/folder/T=4.0,alpha=0.9,seed=0/2026-01-01_00-00-00.123456-abcdef"
    out = io.StringIO()
    Console(file=out, width=120).print(runs_table([_run(4.0, run_dir=folder)], "runs"))
    assert folder in out.getvalue()
