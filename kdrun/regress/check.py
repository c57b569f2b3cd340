"""A recipe's expectations checked against its runs' results, with margins in noise units.

A margin is also given in noise units (``kdrun.regress.bounds.noise_unit``: the std of the checked
aggregate, from the recipe's ``reference`` or else the run's own seeds), so a failure reads as
noise (a unit or two) or a regression (far beyond ``Z`` units).
"""

import statistics
from dataclasses import dataclass
from typing import Any

from kdrun.regress.bounds import Expectation, Z, noise_unit
from kdrun.regress.recipe import Recipe


@dataclass
class Verdict:
    recipe: Recipe
    expectation: Expectation
    values: list[float]
    measured: float | None
    status: str  # pass | fail | error | skipped (the recipe's data set is not on this machine)
    message: str = ""
    unit: float | None = None  # std of the checked aggregate (see noise_unit); None: unknown
    unit_source: str = ""  # "reference" (the recipe's measured std) | "seeds" (this run's)

    @property
    def margin_units(self) -> float | None:
        """Margin to the bound in noise units (negative: outside)."""
        if self.measured is None or not self.unit:
            return None
        return self.expectation.margin(self.measured) / self.unit

    @property
    def from_reference(self) -> float | None:
        """Signed distance of the measured aggregate from the reference mean, in noise units."""
        ref = self.recipe.reference.get(self.expectation.metric)
        if self.measured is None or ref is None or not self.unit or self.expectation.aggregate != "mean":
            return None
        return (self.measured - ref.mean) / self.unit


def noise(recipe: Recipe, exp: Expectation, values: list[float]) -> tuple[float | None, str]:
    """(noise unit of ``exp``'s aggregate over ``values``, where its std came from)."""
    ref = recipe.reference.get(exp.metric)
    if ref is not None and ref.std > 0:
        return noise_unit(exp.aggregate, ref.std, len(values)), "reference"
    if len(values) > 1 and statistics.stdev(values) > 0:
        return noise_unit(exp.aggregate, statistics.stdev(values), len(values)), "seeds"
    return None, ""


def explain(v: Verdict) -> str:
    """Why ``v`` failed, in noise units: how far outside the bound, and -- with a reference -- how
    far from the measured mean, so a reader can tell seed noise from a regression."""
    exp, measured = v.expectation, v.measured
    assert measured is not None
    text = f"measured {measured:.4f}, {-exp.margin(measured):.4f} outside the bound"
    if v.unit is None:
        return text + " (no std to compare with: one run, or identical runs)"
    std = "std/sqrt(n)" if exp.aggregate == "mean" else "per-run std"
    source = "the recipe's reference" if v.unit_source == "reference" else "this run's seeds"
    text += f" = {-v.margin_units:.1f} x {std} ({v.unit:.4f}, from {source}, n={len(v.values)})"
    distance = v.from_reference
    if distance is None:
        return text
    ref = v.recipe.reference[exp.metric]
    verdict = (
        "beyond the measured seed and machine noise: a regression"
        if abs(distance) > Z
        else f"within {Z:g} units of it: possibly noise; rerun with more seeds (--seeds) to tell"
    )
    return text + f"; {distance:+.1f} units from the reference mean {ref.mean:.4f}, {verdict}"


def lookup(results: dict[str, Any], metric: str) -> float:
    """``deltas.kd_gain_top1`` -> results["deltas"]["kd_gain_top1"]; KeyError if absent."""
    node: Any = results
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(metric)
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise KeyError(metric)
    return float(node)


def _aggregate(name: str, values: list[float]) -> float:
    return {"mean": statistics.fmean, "min": min, "max": max, "std": statistics.stdev}[name](values)


def check(recipe: Recipe, runs: list[dict[str, Any]]) -> list[Verdict]:
    """Each expectation of ``recipe`` against the results of its seeds' runs."""
    skipped = [r for r in runs if r.get("status") == "skipped"]
    if skipped:  # the data set is not on this machine: nothing was measured
        return [
            Verdict(recipe, e, [], None, "skipped", f"skipped: {skipped[0]['reason']}") for e in recipe.expect
        ]
    verdicts = []
    failed = [r for r in runs if r.get("status") != "ok"]
    for exp in recipe.expect:
        where = f"{recipe.path}:{exp.line}"
        if failed:
            verdicts.append(
                Verdict(
                    recipe,
                    exp,
                    [],
                    None,
                    "error",
                    f"{len(failed)} run(s) failed: {failed[0].get('error', '?')}",
                )
            )
            continue
        try:
            values = [lookup(r, exp.metric) for r in runs]
        except KeyError:
            verdicts.append(
                Verdict(
                    recipe,
                    exp,
                    [],
                    None,
                    "error",
                    f"{where}: metric {exp.metric!r} is not a number in results.json",
                )
            )
            continue
        measured = _aggregate(exp.aggregate, values)
        unit, source = noise(recipe, exp, values)
        verdict = Verdict(recipe, exp, values, measured, "pass", "", unit, source)
        if not exp.holds(measured):
            verdict.status = "fail"
            verdict.message = f"{where}: {exp} not met: {explain(verdict)}"
        verdicts.append(verdict)
    return verdicts
