"""The bound rule of a recipe's expectations: how close a bound may sit to a metric's measured
mean, given its measured noise (docs/results.md, "How the bounds were set")."""

import math
from dataclasses import dataclass

# The bound rule (docs/results.md, "How the bounds were set"): a bound sits at least Z noise units
# from the reference mean -- one unit is std/sqrt(n) for mean(...) over n runs, the per-run std for
# min(...)/max(...) -- plus SLACK for what the reference runs could not sample (other kernels,
# other BLAS builds). Z = 3: a healthy recipe fails one check in ~700 by chance. SLACK = 0.002 is
# two of the 1,000 test images, in the units of the accuracy metrics (fractions).
Z = 3.0
SLACK = 0.002


@dataclass
class Expectation:
    """``aggregate(metric) op value`` over the recipe's seeds, from ``line`` of the recipe file."""

    aggregate: str
    metric: str
    op: str
    value: float
    line: int

    def __str__(self) -> str:
        return f"{self.aggregate}({self.metric}) {self.op} {self.value:g}"

    def holds(self, measured: float) -> bool:
        return {
            ">=": measured >= self.value,
            "<=": measured <= self.value,
            ">": measured > self.value,
            "<": measured < self.value,
        }[self.op]

    def margin(self, measured: float) -> float:
        """How far inside the bound ``measured`` is (negative: outside)."""
        return measured - self.value if self.lower else self.value - measured

    @property
    def lower(self) -> bool:
        """A lower bound (``>=``, ``>``)."""
        return self.op in (">=", ">")


@dataclass
class Reference:
    """A metric's measured per-run mean and std (over seeds and perturbed numerics)."""

    mean: float
    std: float
    line: int


def noise_unit(aggregate: str, std: float, n: int) -> float | None:
    """The std of ``aggregate`` over ``n`` runs whose per-run std is ``std``: std/sqrt(n) for a
    mean, std for a min or max (one run decides it); None for ``std(...)``."""
    if aggregate == "mean":
        return std / math.sqrt(n)
    return std if aggregate in ("min", "max") else None


def allowed_bound(exp: Expectation, ref: Reference, n: int) -> float | None:
    """The tightest bound the rule admits for ``exp`` over ``n`` runs: reference mean -/+
    (Z noise units + SLACK). None where the rule does not apply (``std(...)``)."""
    unit = noise_unit(exp.aggregate, ref.std, n)
    if unit is None:
        return None
    distance = Z * unit + SLACK
    return ref.mean - distance if exp.lower else ref.mean + distance
