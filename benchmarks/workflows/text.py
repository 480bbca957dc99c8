"""Word count: a Dask bag over generated text files, split, counted, top 20.

The text is generated once per (seed, size) into files under the system temporary directory
(written to a private folder and renamed into place, so concurrent runs never see half a
corpus) and read back with ``db.read_text``, as a real word count reads its input. Words follow
a Zipf law over a generated vocabulary, so the top of the ranking is well separated. The work
(``str.split``, counting) is pure Python and holds the GIL.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import dask.bag as db

from benchmarks.workflows.base import Workflow

VOCABULARY = 5000
WORDS_PER_LINE = 12
TOP = 20


def _vocabulary(seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choices(letters, k=rng.randint(2, 9))))
    return sorted(words)


def _write_part(path: Path, seed: int, part: int, size_bytes: int, vocab: list[str],
                cum_weights: list[float]) -> Counter[str]:
    rng = random.Random(seed * 1_000_003 + part)
    counts: Counter[str] = Counter()
    written = 0
    with path.open("w") as out:
        while written < size_bytes:
            words = rng.choices(vocab, cum_weights=cum_weights, k=WORDS_PER_LINE * 1000)
            counts.update(words)
            lines = [" ".join(words[i:i + WORDS_PER_LINE])
                     for i in range(0, len(words), WORDS_PER_LINE)]
            text = "\n".join(lines) + "\n"
            out.write(text)
            written += len(text)
    return counts


def corpus(megabytes: float, files: int, seed: int = 3) -> Path:
    """The folder of generated text for these parameters, generating it on first use."""
    folder = Path(tempfile.gettempdir()) / "daskless-bench" / f"words-{seed}-{megabytes}mb-{files}"
    if (folder / "counts.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".words-"))
    vocab = _vocabulary(seed)
    cum_weights, total = [], 0.0
    for rank in range(1, VOCABULARY + 1):
        total += rank ** -1.1
        cum_weights.append(total)
    counts: Counter[str] = Counter()
    per_file = int(megabytes * 1e6 / files)
    for part in range(files):
        counts += _write_part(scratch / f"part-{part:03d}.txt", seed, part, per_file, vocab,
                              cum_weights)
    (scratch / "counts.json").write_text(json.dumps(counts))
    try:
        os.rename(scratch, folder)
    except OSError:  # another run generated the same corpus first
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def word_count(megabytes: float = 50, files: int = 16, seed: int = 3) -> Any:
    """The 20 most frequent words of the corpus, with their counts."""
    paths = sorted(str(p) for p in corpus(megabytes, files, seed).glob("part-*.txt"))
    return db.read_text(paths).str.split().flatten().frequencies().topk(TOP, key=1)


def word_count_reference(megabytes: float = 50, files: int = 16, seed: int = 3) -> dict[str, int]:
    """Every word's count, counted while the corpus was written."""
    return dict(json.loads((corpus(megabytes, files, seed) / "counts.json").read_text()))


def _top_matches(result: Any, reference: dict[str, int]) -> bool:
    """The right counts for the returned words, and the top counts of the corpus (ties allowed)."""
    pairs = list(result)
    top_counts = sorted(reference.values(), reverse=True)[:TOP]
    return (len(pairs) == TOP and all(reference.get(w) == c for w, c in pairs)
            and sorted((c for _, c in pairs), reverse=True) == top_counts)


def _size(megabytes: float, files: int, seed: int = 3) -> str:
    return f"{megabytes:g}MB"


WORD_COUNT = Workflow(
    "wordcount", word_count, word_count_reference, _top_matches, _size,
    {"test": ({"megabytes": 0.2, "files": 4},), "quick": ({"megabytes": 10, "files": 8},),
     "full": ({"megabytes": 50, "files": 16},)},
)
