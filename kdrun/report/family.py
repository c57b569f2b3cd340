"""Run folders -> the students to choose from (``Candidate``), each pooled over its seeds.

A student is a trained configuration: runs whose resolved configs differ only in the seed, output
paths, loggers, export and latency settings are its seeds. Its exported files are candidates of
their own (they run in another runtime, at another size): the fp32 ONNX file and the int8 one,
each made of the runs whose file passed its checks.
"""

import json
import statistics
from pathlib import Path
from typing import Any

from kdrun.report.frontier import Candidate
from kdrun.report.summary import point_config

# Keys that do not make another student: the seed and where things were written (as in
# `kdrun report`), and how the student was exported and timed (latency is compared by its settings).
NOT_STUDENT = ("export.", "measure.", "threads")
# Prefixes dropped from a varying key in a label: `channels=[4, 8]` for student.args.channels.
SHORT = ("student.args.", "student.")


def student_key(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """What makes a run another student: its config but the seed, paths, export and measurement."""
    point = point_config(config)
    return tuple(sorted((k, v) for k, v in point.items() if not k.startswith(NOT_STUDENT)))


def architectures(runs: list[dict[str, Any]]) -> int:
    """How many different student models the finished runs trained (their budget and seed aside)."""
    models = {
        json.dumps(
            {k: v for k, v in run["config"]["student"].items() if k not in ("epochs", "seed")}, sort_keys=True
        )
        for run in runs
        if run.get("status") == "ok"
    }
    return len(models)


def _labels(keys: list[tuple[tuple[str, str], ...]], names: list[str]) -> list[str]:
    """``cnn channels=[4, 8]``: the student's name and the keys that differ between students."""
    dicts = [dict(key) for key in keys]
    varying = sorted({k for d in dicts for k in d if len({e.get(k) for e in dicts}) > 1})
    varying = [k for k in varying if k != "student.name"]
    labels = []
    for name, d in zip(names, dicts, strict=True):
        parts = []
        for k in varying:
            short = next((k.removeprefix(p) for p in SHORT if k.startswith(p)), k)
            parts.append(f"{short}={d.get(k, '-')}".replace('"', ""))
        labels.append(" ".join([name, *parts]))
    return labels


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _threads(run: dict[str, Any]) -> int | None:
    """The thread count the run timed its models with (None: not recorded, so not compared)."""
    return (run["config"].get("measure") or {}).get("threads")


def _latency(pairs: list[tuple[dict[str, float] | None, int | None]]) -> dict[tuple[int, int], float]:
    """(batch, threads) -> the median over the runs of ``{"batch1": ms, ...}`` figures."""
    pooled: dict[tuple[int, int], list[float]] = {}
    for figures, threads in pairs:
        if threads is None:
            continue
        for batch, ms in (figures or {}).items():
            if ms is not None:
                pooled.setdefault((int(batch.removeprefix("batch")), int(threads)), []).append(ms)
    return {setting: statistics.median(values) for setting, values in pooled.items()}


def _best(runs: list[dict[str, Any]]) -> str:
    """The seed to ship: best validation top-1 (the test split only reports), lowest seed on ties."""
    return max(runs, key=lambda r: (r["student"].get("val_top1", 0.0), -int(r.get("seed") or 0)))["run_dir"]


def _fp32(label: str, runs: list[dict[str, Any]]) -> Candidate:
    student = runs[0]["student"]
    top1, top1_std = _mean_std([r["student"]["top1"] for r in runs])
    scratch, scratch_std = _mean_std([r["baseline"]["top1"] for r in runs])
    gain_std = _mean_std([r["student"]["top1"] - r["baseline"]["top1"] for r in runs])[1]
    on_gpu = [r for r in runs if r["student"].get("device_latency_ms")]
    device_latency = {
        batch: ms
        for (batch, _), ms in _latency([(r["student"]["device_latency_ms"], 0) for r in on_gpu]).items()
    }
    return Candidate(
        label=label,
        top1=top1,
        top1_std=top1_std,
        scratch=scratch,
        scratch_std=scratch_std,
        gain_std=gain_std,
        seeds=sorted(int(r["seed"]) for r in runs),
        params=student.get("params"),
        size_mb=student.get("size_mb"),
        flops=student.get("flops"),
        latency=_latency([(r["student"].get("latency_ms"), _threads(r)) for r in runs]),
        device=on_gpu[0]["student"].get("device") if on_gpu else None,
        device_latency=device_latency,
        run_dir=_best(runs),
    )


# An exported file that is a student of its own: the export format -> the candidate's kind.
TWINS = {"onnx": "onnx", "onnx_int8": "int8"}


def _entry(run: dict[str, Any], fmt: str) -> dict[str, Any] | None:
    return ((run.get("export") or {}).get("formats") or {}).get(fmt)


def _twin(fp32: Candidate, runs: list[dict[str, Any]], fmt: str, notes: list[str]) -> Candidate | None:
    """The exported file of format ``fmt`` (run in ONNX Runtime) as a student of its own, over the
    runs whose file passed its checks: its top-1 from the parity check, its file size, its own
    latency; a note for a file that failed."""
    exported = [r for r in runs if _entry(r, fmt)]
    ok = [r for r in exported if _entry(r, fmt).get("status") == "ok" and "parity" in _entry(r, fmt)]
    for run in exported:
        if run not in ok:
            notes.append(f"{fp32.label}: {fmt} of {run['run_dir']} left out: {_entry(run, fmt).get('error')}")
    if not ok:
        return None
    top1, top1_std = _mean_std([_entry(r, fmt)["parity"]["top1"] for r in ok])
    return Candidate(
        label=fp32.label,
        kind=TWINS[fmt],
        top1=top1,
        top1_std=top1_std,
        seeds=sorted(int(r["seed"]) for r in ok),
        params=fp32.params,
        size_mb=statistics.median(_entry(r, fmt)["file_mb"] for r in ok),
        flops=fp32.flops,
        latency=_latency([(_entry(r, fmt).get("latency_ms"), r["export"].get("threads")) for r in ok]),
        run_dir=_best(ok),
    )


def teachers(runs: list[dict[str, Any]]) -> list[Candidate]:
    """The teachers of the runs (one per architecture and accuracy), for the reference line."""
    found: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for run in runs:
        if run.get("teacher"):
            found.setdefault((run["teacher"]["name"], run["teacher"].get("arch_id")), []).append(run)
    out = []
    for (name, _), members in found.items():
        row = members[0]["teacher"]
        out.append(
            Candidate(
                label=f"teacher {name}",
                kind="teacher",
                top1=statistics.fmean(r["teacher"]["top1"] for r in members),
                params=row.get("params"),
                size_mb=row.get("size_mb"),
                flops=row.get("flops"),
                latency=_latency([(r["teacher"].get("latency_ms"), _threads(r)) for r in members]),
                run_dir=members[0]["run_dir"],
            )
        )
    return out


def candidates(runs: list[dict[str, Any]]) -> tuple[list[Candidate], list[str]]:
    """Every student (and its exported ONNX and int8 twins) among the finished runs, and a note
    per run or file left out."""
    notes = [
        f"{r['run_dir']}: {r.get('status')}: {r.get('error', '')}".rstrip(": ")
        for r in runs
        if r.get("status") != "ok"
    ]
    seen: set[Path] = set()
    groups: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
    for run in runs:
        where = Path(run["run_dir"]).resolve()
        if run.get("status") != "ok" or where in seen:  # a folder named twice counts once
            continue
        seen.add(where)
        groups.setdefault(student_key(run["config"]), []).append(run)
    keys = list(groups)
    labels = _labels(keys, [groups[k][0]["student"]["name"] for k in keys])
    out = []
    for key, label in sorted(
        zip(keys, labels, strict=True), key=lambda kl: groups[kl[0]][0]["student"].get("params", 0)
    ):
        fp32 = _fp32(label, groups[key])
        out.append(fp32)
        out += [t for fmt in TWINS if (t := _twin(fp32, groups[key], fmt, notes)) is not None]
    return out, notes
