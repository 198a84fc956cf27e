"""Per-sample seeds derived from the sample id, so results never depend on batch size, order or rank."""

from __future__ import annotations

import hashlib

SEED_BITS = 32  # fits numpy.random.seed, torch.manual_seed and random.seed alike


def sample_seed(stem: str, base_seed: int = 0) -> int:
    """Seed in [0, 2**32) for the sample `stem` under the run seed `base_seed`.

    sha256 of ``"{base_seed}:{stem}"`` (not Python's `hash`, which is salted per process), first 4 bytes
    big-endian. The same (stem, base_seed) gives the same seed on every machine and in every process.
    """
    if not isinstance(stem, str) or not stem:
        raise ValueError(f"sample_seed needs a non-empty sample id, got {stem!r}")
    if not isinstance(base_seed, int) or isinstance(base_seed, bool):
        raise ValueError(f"sample_seed needs an integer base seed, got {base_seed!r}")
    digest = hashlib.sha256(f"{base_seed}:{stem}".encode("utf-8")).digest()
    return int.from_bytes(digest[: SEED_BITS // 8], "big")
