"""Tests of the per-prefix duration and output-size models."""

from __future__ import annotations

import random

import pytest

from daskless.scheduler.prediction import (
    DEFAULT_DURATION_S,
    VCPU_MB,
    Sample,
    bandwidth_time,
    fit_duration,
    fit_output,
    vcpus,
)


def truth(input_bytes: float, memory_mb: float) -> float:
    """A task with 20 ms of fixed cost and CPU work of 0.1 s + 1 s per MB, on one CPU."""
    return 0.02 + (0.1 + input_bytes / 1e6) / min(memory_mb / VCPU_MB, 1.0)


def samples_at(sizes: list[int], rng: random.Random, noise: float = 0.0) -> list[Sample]:
    out = []
    for memory in sizes:
        for _ in range(6):
            x = rng.uniform(1e5, 2e6)
            seconds = truth(x, memory) * (1 + rng.uniform(-noise, noise))
            out.append(Sample(seconds, x, memory, output_bytes=1000 + 0.5 * x))
    return out


def test_a_fit_over_several_sizes_recovers_the_fixed_and_the_cpu_terms() -> None:
    model = fit_duration(samples_at([512, 1024, 1769], random.Random(1)))
    assert model.fixed_s == pytest.approx(0.02, rel=1e-6)
    assert model.cpu_s == pytest.approx(0.1, rel=1e-6)
    assert model.per_byte_s == pytest.approx(1e-6, rel=1e-6)
    # A size never seen, and one past a single CPU (which a GIL-bound task cannot use).
    assert model.predict(5e5, 768) == pytest.approx(truth(5e5, 768))
    assert model.predict(5e5, 3538) == pytest.approx(truth(5e5, 1769))


def test_noisy_samples_predict_within_a_few_percent_and_keep_their_spread() -> None:
    seed = 20261128
    print(f"seed {seed}")
    rng = random.Random(seed)
    model = fit_duration(samples_at([512, 1024, 1769], rng, noise=0.1))
    errors = sorted(abs(model.predict(x, m) / truth(x, m) - 1)
                    for m in (640, 1536) for x in (2e5, 1e6, 1.8e6))
    assert errors[len(errors) // 2] < 0.05
    assert min(model.residuals) < 0.97 and max(model.residuals) > 1.03
    draws = [model.sample(rng, 1e6, 1024) for _ in range(500)]
    assert min(draws) < model.predict(1e6, 1024) < max(draws)


def test_one_size_only_is_taken_as_cpu_work() -> None:
    model = fit_duration(samples_at([1024], random.Random(2)))
    assert model.fixed_s == 0.0 and model.cpu_s > 0 and model.per_byte_s > 0
    assert model.predict(1e6, 1024) == pytest.approx(truth(1e6, 1024), rel=0.05)


def test_few_samples_give_their_mean_and_none_the_default() -> None:
    assert fit_duration([]).predict(1e6, 1024) == DEFAULT_DURATION_S
    two = [Sample(1.0, 10, 1769), Sample(3.0, 10, 1769)]
    model = fit_duration(two)
    assert model.predict(10, 1769) == pytest.approx(2.0)
    assert model.predict(10, 1769 / 2) == pytest.approx(4.0)  # half the CPU
    assert model.samples == 2


def test_coefficients_are_never_negative() -> None:
    # Durations that fall with input size would fit a negative time per byte.
    falling = [Sample(1.0 - i * 0.1, i * 1e6, 1769) for i in range(5)]
    model = fit_duration(falling)
    assert model.per_byte_s == 0.0 and model.cpu_s > 0
    assert model.predict(1e9, 1769) > 0


def test_output_sizes_fit_a_base_and_a_ratio() -> None:
    model = fit_output(samples_at([1024], random.Random(3)))
    assert model.base_bytes == pytest.approx(1000, rel=1e-6)
    assert model.ratio == pytest.approx(0.5, rel=1e-6)
    assert fit_output([]).predict(123) == 123  # no history: as big as its input
    same_input = [Sample(1, 10, 1024, output_bytes=b) for b in (4, 6, 8)]
    assert fit_output(same_input).predict(10) == pytest.approx(6)


def test_a_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive number of MB"):
        vcpus(0)


PERIOD_S = 0.01


def test_the_bandwidth_curve_is_full_speed_within_the_quota_then_the_share() -> None:
    # 0.25 vCPU per 10 ms period: 2.5 ms of CPU at full speed, then 2.5 ms per period.
    assert bandwidth_time(0.002, 0.25, 1.0, PERIOD_S) == pytest.approx(0.002)
    assert bandwidth_time(0.005, 0.25, 1.0, PERIOD_S) == pytest.approx(0.0125)
    assert bandwidth_time(1.0, 0.25, 1.0, PERIOD_S) == pytest.approx(4.0 - 0.0075)
    assert bandwidth_time(1.0, 0.25, 1.0, 0.0) == pytest.approx(4.0)  # no period: smooth
    assert bandwidth_time(1.0, 2.0, 1.0, PERIOD_S) == pytest.approx(1.0)  # past its CPUs


@pytest.mark.parametrize("work_s", [0.0005, 0.004, 0.05])
def test_a_burst_fit_predicts_sizes_not_seen_for_short_and_long_tasks(work_s: float) -> None:
    seed = 20261129
    print(f"seed {seed}")
    rng = random.Random(seed)
    samples = [Sample(bandwidth_time(work_s, vcpus(m), 1.0, PERIOD_S) * rng.uniform(0.95, 1.05),
                      1000.0, m) for m in (512, 1024) for _ in range(10)]
    # A few tasks met the end of their quota: they must not move the median.
    samples += [Sample(s.seconds + 0.007, s.input_bytes, s.memory_mb) for s in samples[:3]]
    model = fit_duration(samples, period_s=PERIOD_S)
    for size in (256, 768, 1769):
        truth = bandwidth_time(work_s, vcpus(size), 1.0, PERIOD_S)
        assert model.typical(1000.0, size) == pytest.approx(truth, rel=0.08), size
    # The mean is the share's average speed (what a worker's many tasks add up to), times
    # the samples' mean ratio to it.
    assert model.curve(1000.0, 256) == pytest.approx(model.work_s(1000.0) / vcpus(256))
    nearest = model.mean_ratio(512)  # the mean ratio of the samples at the nearest size
    assert model.predict(1000.0, 256) == pytest.approx(model.curve(1000.0, 256) * nearest)
