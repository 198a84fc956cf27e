"""Per-item random generators: one `numpy.random.Generator` per (seed, domain, index).

Deriving each item's stream from its id (never from a shared stream or a batch position) makes a mask
independent of the order items are made in and of how many workers make them.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_words(text: str, n_words: int = 4) -> list[int]:
    """`n_words` 32-bit words from the blake2b digest of `text` (UTF-8).

    Python's `hash()` is salted per process (PYTHONHASHSEED), so it must not seed anything persistent.
    """
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=4 * n_words).digest()
    return [int.from_bytes(digest[4 * i : 4 * i + 4], "little") for i in range(n_words)]


def item_seed_sequence(seed: int, domain: str, index: int) -> np.random.SeedSequence:
    """The `SeedSequence` of one item; entropy = [seed, *blake2b words of domain, index]."""
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if not isinstance(domain, str):
        raise ValueError(f"domain must be a string, got {domain!r}")
    return np.random.SeedSequence([int(seed), *stable_words(domain), int(index)])


def item_rng(seed: int, domain: str, index: int) -> np.random.Generator:
    """A fresh PCG64 `numpy.random.Generator` for item `index` of `domain` under the global `seed`.

    The same triple always gives the same stream, in any process, order or worker count.
    """
    return np.random.Generator(np.random.PCG64(item_seed_sequence(seed, domain, index)))
