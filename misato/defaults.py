"""Defaults every command shares: one owner for the folders, the default protocol and the batch sizes.

Folders: `$MISATO_CACHE_DIR` (default `$XDG_CACHE_HOME/misato`, i.e. ~/.cache/misato) is the cache root, holding
`features/` (ground-truth feature cache), `embedded/<size>/` (the embedded photo set) and `weight-hashes.json`
(sha256 of weight files by path, size, mtime and inode); `$MISATO_WEIGHTS_DIR`
(default `<cache root>/weights`) holds pretrained files. Nothing is ever written inside site-packages.
"""

from __future__ import annotations

import os
from pathlib import Path

PROTOCOL = "comod"
SCORE_BATCH_SIZE = 16
INPAINT_BATCH_SIZE = 1
# Bootstrap resamples by cost (`evaluators.bootstrap.BootstrapConfig`; 0 turns those intervals off): per-image
# means and U/P-IDS, FID (a full recomputation each), KID (its protocol's 100 subsets each; off).
BOOTSTRAP_RESAMPLES = 1000
SET_BOOTSTRAP_RESAMPLES = 20
KID_BOOTSTRAP_RESAMPLES = 0
# A mask pixel is a hole when its gray level / 255 (oriented so that 1 = hole) is at least this: 128 of 255 in
# files (`misato.io.MASK_THRESHOLD`), `Protocol.mask_threshold` when scoring.
MASK_HOLE_FRACTION = 0.5
EMBEDDED_SIZE = 512  # side of the embedded photo set (`misato.embedded`, `--embedded-size` of misato run and demo)
# The most bootstrap resamples any count may ask for (--bootstrap, --set-bootstrap, --kid-bootstrap, study
# tally --bootstrap; checked by `evaluators.bootstrap.check_resamples`). Memory is flat in the count (resamples are
# drawn in chunks); time is not: 100,000 resamples of 10 per-image means at 2,000 images took 9.4 s on 2 CPU cores,
# and a set metric recomputes per resample. Far more than a 95% percentile interval needs (1,000-10,000 are usual).
BOOTSTRAP_MAX = 100_000


def cache_root() -> Path:
    configured = os.environ.get("MISATO_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "misato"


def features_dir() -> Path:
    """Ground-truth feature cache: `<cache root>/features`."""
    return cache_root() / "features"


def embedded_root() -> Path:
    """The embedded photo sets: `<cache root>/embedded`."""
    return cache_root() / "embedded"


def weight_hashes_file() -> Path:
    """The weight-file digest cache (`misato.weights.file_sha256`): `<cache root>/weight-hashes.json`."""
    return cache_root() / "weight-hashes.json"


def weights_dir() -> Path:
    """`$MISATO_WEIGHTS_DIR`, else `<cache root>/weights`."""
    configured = os.environ.get("MISATO_WEIGHTS_DIR")
    return Path(configured).expanduser() if configured else cache_root() / "weights"
