"""Models of a task prefix fitted from past runs: how long its tasks take, how much they return.

A planner needs, for a task it has not run yet, its duration at any worker size and its output
size. Tasks of one *prefix* (dask's key prefix: ``sum``, ``getitem``, ``inc``...) do the same
work on different inputs, so their history is pooled:

- **Duration** ``t(m, x) = fixed_s + (cpu_s + per_byte_s * x) / min(vcpus(m), parallelism)``
  for a worker of ``m`` MB and ``x`` input bytes. CPU is proportional to memory, as on Lambda
  (one vCPU per 1,769 MB); ``parallelism`` is how many CPUs the task can use (1 for Python that
  holds the GIL, more for BLAS). Unlike a plain "seconds per input byte" rule, the fixed term
  keeps the per-task overhead that does not shrink with more CPU or fewer bytes.
- **Output size** ``y(x) = base_bytes + ratio * x``.

Both are fitted by least squares with non-negative coefficients (every subset of the terms is
tried, and the best fit whose coefficients are all non-negative wins: a negative time per byte
would predict nonsense outside the samples). A model keeps its relative residuals, so that
:meth:`DurationModel.sample` draws durations as the history spread them, for the simulator's
percentiles; a model fitted from fewer than :data:`MIN_SAMPLES` samples is their mean (as
dask's per-prefix averages are), and a prefix with no history at all gets
:data:`DEFAULT_DURATION_S` (dask's ``unknown-task-duration``).

Everything here is pure: samples in, models out. Reading samples from the metrics store is the
client's job.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_DURATION_S",
    "MIN_SAMPLES",
    "VCPU_MB",
    "DurationModel",
    "OutputModel",
    "Sample",
    "fit_duration",
    "fit_output",
    "vcpus",
]

#: Memory that buys one vCPU on Lambda; every backend's sizes mean the same.
VCPU_MB = 1769
#: Fewer samples than this give a mean, not a fitted model.
MIN_SAMPLES = 3
#: A prefix never seen before (dask's default for an unknown task).
DEFAULT_DURATION_S = 0.5
#: Residuals kept per model (the most recent ones).
MAX_RESIDUALS = 256
#: A sample this many times above the typical one is left out of a refit (see fit_duration).
OUTLIER_RATIO = 3.0


def vcpus(memory_mb: float) -> float:
    """CPUs a worker of ``memory_mb`` has, in proportion to its memory."""
    if memory_mb <= 0:
        raise ValueError(f"a worker size is a positive number of MB, not {memory_mb}")
    return memory_mb / VCPU_MB


@dataclass(frozen=True)
class Sample:
    """One task that ran: how long, on how many input bytes, on a worker of how many MB, and
    how many bytes it returned."""

    seconds: float
    input_bytes: float
    memory_mb: float
    output_bytes: float = 0.0


@dataclass(frozen=True)
class DurationModel:
    """A prefix's duration at any size (see the module docstring)."""

    fixed_s: float
    cpu_s: float
    per_byte_s: float
    parallelism: float = 1.0
    residuals: tuple[float, ...] = (1.0,)
    samples: int = 0

    def predict(self, input_bytes: float, memory_mb: float) -> float:
        cpus = min(vcpus(memory_mb), self.parallelism)
        return self.fixed_s + (self.cpu_s + self.per_byte_s * input_bytes) / cpus

    def typical(self, input_bytes: float, memory_mb: float) -> float:
        """The median duration: the prediction times the median of the history's ratios
        (what a single task most likely takes; :meth:`predict` is the mean a sum needs)."""
        ratios = sorted(self.residuals)
        return self.predict(input_bytes, memory_mb) * ratios[len(ratios) // 2]

    def sample(self, rng: random.Random, input_bytes: float, memory_mb: float) -> float:
        """A duration drawn as the history spread them around the prediction."""
        return self.predict(input_bytes, memory_mb) * rng.choice(self.residuals)


@dataclass(frozen=True)
class OutputModel:
    """A prefix's output size for an input size."""

    base_bytes: float
    ratio: float

    def predict(self, input_bytes: float) -> float:
        return self.base_bytes + self.ratio * input_bytes


def fit_duration(samples: Sequence[Sample], parallelism: float = 1.0) -> DurationModel:
    """The duration model of a prefix's ``samples``."""
    if not samples:
        return DurationModel(DEFAULT_DURATION_S, 0.0, 0.0, parallelism)
    cpus = [min(vcpus(s.memory_mb), parallelism) for s in samples]
    seconds = [s.seconds for s in samples]
    if len(samples) < MIN_SAMPLES:
        # Too few to fit: their mean, as CPU work (it scales with the size).
        mean_cpu_s = statistics.fmean(t * c for t, c in zip(seconds, cpus))
        return _with_residuals(DurationModel(0.0, mean_cpu_s, 0.0, parallelism), samples)
    # With one size only, the fixed term and the CPU term cannot be told apart: the time is
    # taken as CPU work, which is what a bigger worker shortens.
    model = _fit_terms(samples, cpus, parallelism)
    # Outliers (a first call that loaded a library, a pause of the whole machine) would pull a
    # least-squares fit up for every task: fit again without the samples far above the rest.
    ratios = [s.seconds / p if (p := model.predict(s.input_bytes, s.memory_mb)) > 0 else 1.0
              for s in samples]
    typical = statistics.median(ratios)
    kept = [i for i, r in enumerate(ratios) if r <= OUTLIER_RATIO * typical]
    if MIN_SAMPLES <= len(kept) < len(samples):
        model = _fit_terms([samples[i] for i in kept], [cpus[i] for i in kept], parallelism)
    return _with_residuals(model, samples)


def _fit_terms(samples: Sequence[Sample], cpus: Sequence[float],
               parallelism: float) -> DurationModel:
    """Least squares over the model's terms (see the module docstring)."""
    seconds = [s.seconds for s in samples]
    columns = [[1 / c for c in cpus], [s.input_bytes / c for s, c in zip(samples, cpus)]]
    names: tuple[str, ...] = ("cpu_s", "per_byte_s")
    if len(set(cpus)) > 1:
        columns.insert(0, [1.0] * len(samples))
        names = ("fixed_s", "cpu_s", "per_byte_s")
    coefficients = dict(zip(names, _non_negative_fit(columns, seconds)))
    return DurationModel(coefficients.get("fixed_s", 0.0), coefficients["cpu_s"],
                         coefficients["per_byte_s"], parallelism)


def fit_output(samples: Sequence[Sample]) -> OutputModel:
    """The output-size model of a prefix's ``samples`` (with none: outputs as big as inputs,
    the seed system's assumption)."""
    if not samples:
        return OutputModel(0.0, 1.0)
    outputs = [s.output_bytes for s in samples]
    inputs = [s.input_bytes for s in samples]
    if len(samples) < MIN_SAMPLES or len(set(inputs)) == 1:
        return OutputModel(statistics.fmean(outputs), 0.0)
    base, ratio = _non_negative_fit([[1.0] * len(inputs), inputs], outputs)
    return OutputModel(base, ratio)


def _non_negative_fit(columns: list[list[float]], target: list[float]) -> list[float]:
    """Least squares with every coefficient >= 0: the best of the fits over subsets of the
    columns whose coefficients are all non-negative (exact for the few terms used here)."""
    n = len(columns)
    best = (math.fsum(y * y for y in target), [0.0] * n)
    for size in range(1, n + 1):
        for subset in itertools.combinations(range(n), size):
            solution = _least_squares([columns[i] for i in subset], target)
            if solution is None or any(c < 0 for c in solution):
                continue
            fitted = [math.fsum(c * columns[i][row] for c, i in zip(solution, subset))
                      for row in range(len(target))]
            error = math.fsum((f - y) ** 2 for f, y in zip(fitted, target))
            if error < best[0] * (1 - 1e-12):
                coefficients = [0.0] * n
                for index, value in zip(subset, solution):
                    coefficients[index] = value
                best = (error, coefficients)
    return best[1]


def _least_squares(columns: list[list[float]], target: list[float]) -> list[float] | None:
    """Ordinary least squares by the normal equations, on columns scaled to unit length (the
    terms differ by orders of magnitude); ``None`` if the columns are dependent."""
    scales = [math.sqrt(math.fsum(v * v for v in col)) or 1.0 for col in columns]
    scaled = [[v / s for v in col] for col, s in zip(columns, scales)]
    k = len(scaled)
    gram = [[math.fsum(a * b for a, b in zip(scaled[i], scaled[j])) for j in range(k)]
            for i in range(k)]
    rhs = [math.fsum(a * y for a, y in zip(scaled[i], target)) for i in range(k)]
    solution = _solve(gram, rhs)
    return None if solution is None else [c / s for c, s in zip(solution, scales)]


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting on a small square system."""
    k = len(rhs)
    rows = [[*row, b] for row, b in zip(matrix, rhs)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) < 1e-12:
            return None
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, k):
            factor = rows[r][col] / rows[col][col]
            rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
    solution = [0.0] * k
    for r in reversed(range(k)):
        solution[r] = (rows[r][k] - math.fsum(rows[r][c] * solution[c]
                                              for c in range(r + 1, k))) / rows[r][r]
    return solution


def _with_residuals(model: DurationModel, samples: Sequence[Sample]) -> DurationModel:
    recent = samples[-MAX_RESIDUALS:]
    ratios = tuple(s.seconds / p for s in recent
                   if (p := model.predict(s.input_bytes, s.memory_mb)) > 0)
    return DurationModel(model.fixed_s, model.cpu_s, model.per_byte_s, model.parallelism,
                         ratios or (1.0,), len(samples))
