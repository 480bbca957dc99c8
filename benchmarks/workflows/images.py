"""Image transform: a per-image pipeline over generated images, then a fan-in summary.

Each image goes through generate, blur (3x3 box), edge detection (Sobel magnitude), normalise to
[0, 1], downsample (2x2 means) and histogram: six tasks per image, all numpy. One summary task
then gathers every histogram and every thumbnail. Images are a few MB, so the workflow measures
moving mid-sized arrays between tasks as much as computing on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from dask.delayed import delayed

from benchmarks.workflows.base import Workflow

BINS = 32


def generate(seed: int, index: int, size: int) -> np.ndarray:
    return np.random.default_rng((seed, index)).random((size, size))


def blur(image: np.ndarray) -> np.ndarray:
    padded = np.pad(image, 1, mode="edge")
    size = image.shape[0]
    total = sum(padded[i:i + size, j:j + size] for i in range(3) for j in range(3))
    return np.asarray(total) / 9.0


def edges(image: np.ndarray) -> np.ndarray:
    p = np.pad(image, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy)


def normalise(image: np.ndarray) -> np.ndarray:
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low if high > low else 1.0)


def downsample(image: np.ndarray) -> np.ndarray:
    half = image.shape[0] // 2
    return image[:half * 2, :half * 2].reshape(half, 2, half, 2).mean(axis=(1, 3))


def histogram(image: np.ndarray) -> np.ndarray:
    return np.histogram(image, bins=BINS, range=(0.0, 1.0))[0]


def summary(histograms: list[np.ndarray], thumbnails: list[np.ndarray]) -> dict[str, Any]:
    return {"histogram": np.sum(histograms, axis=0),
            "mean": float(np.mean([t.mean() for t in thumbnails]))}


def _pipeline(seed: int, index: int, size: int) -> tuple[Any, Any]:
    small = delayed(downsample)(delayed(normalise)(delayed(edges)(delayed(blur)(
        delayed(generate)(seed, index, size)))))
    return delayed(histogram)(small), small


def image_transform(images: int = 64, size: int = 512, seed: int = 4) -> Any:
    """``6 * images + 1`` tasks: six per image, one summary."""
    outputs = [_pipeline(seed, i, size) for i in range(images)]
    return delayed(summary)([h for h, _ in outputs], [t for _, t in outputs])


def image_transform_reference(images: int = 64, size: int = 512, seed: int = 4) -> dict[str, Any]:
    thumbnails = [downsample(normalise(edges(blur(generate(seed, i, size)))))
                  for i in range(images)]
    return summary([histogram(t) for t in thumbnails], thumbnails)


def _summary_matches(result: Any, reference: dict[str, Any]) -> bool:
    return bool(np.array_equal(result["histogram"], reference["histogram"])
                and np.isclose(result["mean"], reference["mean"], rtol=1e-12))


def _label(images: int, size: int, seed: int = 4) -> str:
    return f"{images}x{size}"


IMAGE_TRANSFORM = Workflow(
    "image", image_transform, image_transform_reference, _summary_matches, _label,
    {"test": ({"images": 4, "size": 64},), "quick": ({"images": 16, "size": 512},),
     "full": ({"images": 64, "size": 512},)},
)
