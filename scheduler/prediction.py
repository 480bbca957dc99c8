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

That duration is the *mean*: a worker of ``v`` vCPUs gets through ``v`` CPU-seconds a second.
Where the share is enforced by CPU bandwidth control (Linux CFS: a quota of ``v * period`` CPU
time per period, as on the gateway and the Lambda emulator), a single task does not run at that
mean speed: it runs at full speed until the quota of the period is spent, then waits for the
next period. A task with less work than the quota is as fast at 256 MB as at 1,769 MB; a longer
one takes ``work / v - period * (1 - v / p)`` (``p``: the CPUs it can use). With the backend's
``period_s`` known, the model fits the work on that curve (the *burst* model) and reports its
median from it (:meth:`DurationModel.typical`), while :meth:`DurationModel.predict` stays the
mean that sums over many tasks. Without a period (0: the share is smooth, or unknown, as inside
a Lambda micro-VM) both are the formula above.

Both are fitted by least squares with non-negative coefficients (every subset of the terms is
tried, and the best fit whose coefficients are all non-negative wins: a negative time per byte
would predict nonsense outside the samples). A model keeps its relative residuals, so that
:meth:`DurationModel.sample` draws durations as the history spread them, for the simulator's
percentiles, and its mean (:meth:`DurationModel.predict`) is the formula times the samples'
total time over the formula's at the nearest size seen (a fit that leaves out outliers, or
the burst model below, is not a mean by itself); a model fitted from fewer than
:data:`MIN_SAMPLES` samples is their mean (as dask's per-prefix averages are), and a prefix
with no history at all gets :data:`DEFAULT_DURATION_S` (dask's ``unknown-task-duration``).

Everything here is pure: samples in, models out. Reading samples from the metrics store is the
client's job.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

__all__ = [
    "DEFAULT_DURATION_S",
    "MIN_SAMPLES",
    "VCPU_MB",
    "DurationModel",
    "OutputModel",
    "Sample",
    "bandwidth_time",
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
#: A size's mean ratio to the formula is its own only beyond this share of the pooled one.
SIZE_NOISE = 0.1
#: Fixed terms the burst model tries, as shares of the shortest sample.
FIXED_SHARES = (0.0, 0.25, 0.5, 0.75, 0.95)


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
    period_s: float = 0.0
    """The CPU bandwidth period of the workers (0: none; see the module docstring)."""
    typical_ratio: float = 1.0
    """The median ratio of the samples to the burst model (what :meth:`typical` scales by)."""
    mean_ratios: tuple[tuple[float, float], ...] = ()
    """Per worker size seen, ``(MB, its samples' total time over the formula's)``: what
    :meth:`predict` scales the formula by, at the nearest size seen (under a bandwidth
    quota, how far a short task's time strays from its share depends on the size)."""

    def work_s(self, input_bytes: float) -> float:
        """CPU seconds of a task on ``input_bytes``."""
        return self.cpu_s + self.per_byte_s * input_bytes

    def curve(self, input_bytes: float, memory_mb: float) -> float:
        """The fitted formula: CPU work at the size's average speed."""
        cpus = min(vcpus(memory_mb), self.parallelism)
        return self.fixed_s + self.work_s(input_bytes) / cpus

    def predict(self, input_bytes: float, memory_mb: float) -> float:
        """The mean duration: the formula times :meth:`mean_ratio`."""
        return self.curve(input_bytes, memory_mb) * self.mean_ratio(memory_mb)

    def mean_ratio(self, memory_mb: float) -> float:
        """The samples' time over the formula's at the size seen nearest ``memory_mb``."""
        if not self.mean_ratios:
            return 1.0
        return min(self.mean_ratios, key=lambda r: abs(math.log(r[0] / memory_mb)))[1]

    def burst(self, input_bytes: float, memory_mb: float) -> float:
        """The duration of a task that starts with its period's quota unspent."""
        work = self.work_s(input_bytes)
        return self.fixed_s + bandwidth_time(work, vcpus(memory_mb), self.parallelism,
                                             self.period_s)

    def typical(self, input_bytes: float, memory_mb: float) -> float:
        """The median duration (what a single task most likely takes; :meth:`predict` is
        the mean a sum needs)."""
        return self.burst(input_bytes, memory_mb) * self.typical_ratio

    def sample(self, rng: random.Random, input_bytes: float, memory_mb: float) -> float:
        """A duration drawn as the history spread them around the mean."""
        spread = rng.choice(self.residuals) / statistics.fmean(self.residuals)
        return self.predict(input_bytes, memory_mb) * spread


@dataclass(frozen=True)
class OutputModel:
    """A prefix's output size for an input size."""

    base_bytes: float
    ratio: float

    def predict(self, input_bytes: float) -> float:
        return self.base_bytes + self.ratio * input_bytes


def bandwidth_time(work_s: float, cpus: float, parallelism: float, period_s: float) -> float:
    """Seconds ``work_s`` CPU-seconds take at ``cpus`` vCPUs enforced per ``period_s`` (0:
    smoothly), for a task that can use ``parallelism`` CPUs: full speed while the period's
    quota lasts, then a quota per period (see the module docstring)."""
    if period_s <= 0 or cpus >= parallelism:
        return work_s / min(cpus, parallelism)
    return max(work_s / parallelism, work_s / cpus - period_s * (1 - cpus / parallelism))


def _work_for(seconds: float, cpus: float, parallelism: float, period_s: float) -> float:
    """The CPU work that :func:`bandwidth_time` turns into ``seconds`` (its inverse)."""
    if period_s <= 0 or cpus >= parallelism:
        return seconds * min(cpus, parallelism)
    quota_s = cpus * period_s
    if seconds * parallelism <= quota_s:
        return seconds * parallelism
    return cpus * (seconds + period_s * (1 - cpus / parallelism))


def fit_duration(samples: Sequence[Sample], parallelism: float = 1.0,
                 period_s: float = 0.0) -> DurationModel:
    """The duration model of a prefix's ``samples`` from workers whose CPU bandwidth period
    is ``period_s`` (0: none)."""
    if not samples:
        return DurationModel(DEFAULT_DURATION_S, 0.0, 0.0, parallelism, period_s=period_s)
    if period_s > 0 and len(samples) >= MIN_SAMPLES:
        return _fit_burst(samples, parallelism, period_s)
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
    ratios = [s.seconds / p if (p := model.curve(s.input_bytes, s.memory_mb)) > 0 else 1.0
              for s in samples]
    typical = statistics.median(ratios)
    kept = [i for i, r in enumerate(ratios) if r <= OUTLIER_RATIO * typical]
    if MIN_SAMPLES <= len(kept) < len(samples):
        model = _fit_terms([samples[i] for i in kept], [cpus[i] for i in kept], parallelism)
    return _with_residuals(model, samples)


def _fit_burst(samples: Sequence[Sample], parallelism: float,
               period_s: float) -> DurationModel:
    """The burst model (see the module docstring): for each candidate fixed term (a share
    of the shortest sample), every sample's time beyond it is turned back into CPU work on
    the bandwidth curve of its size, and the work is fitted linearly in the input bytes
    (again without the samples far above the rest); the candidate whose predictions are
    closest to the samples in ratio wins. Ratios, not squares: a task that met the end of
    its quota takes several times its usual time, and must not pull the model up."""
    shortest = min(s.seconds for s in samples)
    best: tuple[float, DurationModel] | None = None
    for share in FIXED_SHARES:
        model = _fit_work(samples, shortest * share, parallelism, period_s)
        model = _fit_work(samples, shortest * share, parallelism, period_s,
                          _kept(model, samples))
        error = math.fsum(abs(math.log(max(s.seconds, 1e-9) / max(p, 1e-9)))
                          for s in samples if (p := model.burst(s.input_bytes, s.memory_mb)))
        if best is None or error < best[0] * (1 - 1e-9):
            best = (error, model)
    assert best is not None
    return _with_residuals(best[1], samples)


def _fit_work(samples: Sequence[Sample], fixed_s: float, parallelism: float, period_s: float,
              kept: Sequence[int] | None = None) -> DurationModel:
    chosen = [samples[i] for i in kept] if kept is not None else list(samples)
    work = [_work_for(max(s.seconds - fixed_s, 0.0), vcpus(s.memory_mb), parallelism, period_s)
            for s in chosen]
    cpu_s, per_byte_s = _line_fit([s.input_bytes for s in chosen], work)
    return DurationModel(fixed_s, cpu_s, per_byte_s, parallelism, period_s=period_s)


def _line_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """``y = a + b * x`` by least squares with ``a, b >= 0``, in closed form (the burst fit
    runs it ten times per prefix, where ``_non_negative_fit``'s general search is slow)."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx <= 0:
        return max(mean_y, 0.0), 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    if slope <= 0:
        return max(mean_y, 0.0), 0.0
    intercept = mean_y - slope * mean_x
    if intercept >= 0:
        return intercept, slope
    # The best line through the origin (the intercept at its bound).
    return 0.0, max(sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs), 0.0)


def _kept(model: DurationModel, samples: Sequence[Sample]) -> list[int]:
    """The samples at most ``OUTLIER_RATIO`` times above the typical one's ratio to the
    burst model."""
    ratios = [s.seconds / p if (p := model.burst(s.input_bytes, s.memory_mb)) > 0 else 1.0
              for s in samples]
    typical = statistics.median(ratios)
    kept = [i for i, r in enumerate(ratios) if r <= OUTLIER_RATIO * typical]
    return kept if len(kept) >= MIN_SAMPLES else list(range(len(samples)))


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
    """``model`` with the samples' ratios to its formula (for draws), the ratio of their
    total time to the formula's per size (for the mean) and their median ratio to its burst
    model (for :meth:`DurationModel.typical`)."""
    recent = samples[-MAX_RESIDUALS:]
    ratios = tuple(s.seconds / p for s in recent
                   if (p := model.curve(s.input_bytes, s.memory_mb)) > 0) or (1.0,)
    bursts = [s.seconds / p for s in recent if (p := model.burst(s.input_bytes, s.memory_mb)) > 0]
    # Totals, not a mean of ratios: one short task that met the end of its quota has a
    # ratio of hundreds, which a mean of ratios would lend every task of the prefix.
    totals: dict[float, list[float]] = {}
    for sample in recent:
        total = totals.setdefault(sample.memory_mb, [0.0, 0.0])
        total[0] += sample.seconds
        total[1] += model.curve(sample.input_bytes, sample.memory_mb)
    measured, fitted = (math.fsum(t[i] for t in totals.values()) for i in (0, 1))
    pooled = measured / fitted if fitted > 0 else 1.0
    own = {m: t[0] / t[1] if t[1] > 0 else pooled for m, t in totals.items()}
    # A size keeps its own ratio only where it differs from the pooled one by more than
    # noise: otherwise sizes' costs would differ by their samples' luck alone.
    mean_ratios = tuple((m, r if abs(r / pooled - 1) > SIZE_NOISE else pooled)
                        for m, r in sorted(own.items()))
    return replace(model, residuals=ratios, samples=len(samples),
                   typical_ratio=statistics.median(bursts) if bursts else 1.0,
                   mean_ratios=mean_ratios)
