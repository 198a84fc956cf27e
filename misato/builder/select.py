"""Selecting representative images: BisectingKMeans clusters, one member nearest each centre.

Pure numpy/scikit-learn on a feature matrix (no files), so it is tested on synthetic features.

Paper (Sec. 4): "we use BisectingKMeans to cluster each dataset into 500 clusters, and select the cluster
centers as the evaluation data". A centre is not an image, so the representative of a cluster is its member
nearest to the centre (squared Euclidean distance in float64), searched within the cluster: a global
nearest-image search could pick one image for two centres. Ties go to the lowest source index. Clusters
are then ordered by their representative's source index, so the output order does not depend on
scikit-learn's cluster numbering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Clustering:
    """A fitted clustering: `labels` int64 (N,), `centers` float64 (K, D), and the fit settings."""

    labels: np.ndarray
    centers: np.ndarray
    settings: dict[str, Any]

    @property
    def n_clusters(self) -> int:
        return int(self.centers.shape[0])

    def ranked_members(self, features: np.ndarray, cluster: int) -> tuple[np.ndarray, np.ndarray]:
        """Members of `cluster` sorted by (distance to its centre, index): indices int64, distances float64."""
        members = np.flatnonzero(self.labels == cluster)
        diff = features[members].astype(np.float64) - self.centers[cluster]
        distances = np.einsum("ij,ij->i", diff, diff)
        order = np.lexsort((members, distances))  # primary: distance, secondary: index
        return members[order], distances[order]


@dataclass(frozen=True)
class Pick:
    """One selected cluster: its id, its members ranked by distance, and the representative (rank 0)."""

    cluster: int
    ranked: np.ndarray  # int64 member indices, nearest first
    distances: np.ndarray  # float64 squared distances, same order

    @property
    def index(self) -> int:
        return int(self.ranked[0])


def fit_bisecting_kmeans(features: np.ndarray, n_clusters: int, seed: int, **options: Any) -> Clustering:
    """`sklearn.cluster.BisectingKMeans(n_clusters, random_state=seed, **options)` on (N, D) features.

    scikit-learn defaults otherwise (init "random", n_init 1, bisecting_strategy "biggest_inertia").
    """
    from sklearn.cluster import BisectingKMeans

    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    if not 1 <= n_clusters <= features.shape[0]:
        raise ValueError(f"cannot make {n_clusters} clusters from {features.shape[0]} images")
    model = BisectingKMeans(n_clusters=n_clusters, random_state=seed, **options).fit(features)
    settings = {"algorithm": "sklearn.cluster.BisectingKMeans", **{
        k: v for k, v in model.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))}}
    return Clustering(model.labels_.astype(np.int64), model.cluster_centers_.astype(np.float64), settings)


def pick_representatives(features: np.ndarray, clustering: Clustering) -> list[Pick]:
    """The nearest-to-centre member of every non-empty cluster, ordered by that member's index."""
    picks = []
    for cluster in range(clustering.n_clusters):
        ranked, distances = clustering.ranked_members(features, cluster)
        if ranked.size:
            picks.append(Pick(cluster, ranked, distances))
    picks.sort(key=lambda p: p.index)
    indices = [p.index for p in picks]
    if len(set(indices)) != len(indices):  # impossible with disjoint clusters; guards a broken clustering
        raise ValueError("two clusters share a representative; labels are not a partition")
    return picks


def select_representatives(features: np.ndarray, n_clusters: int, seed: int) -> tuple[list[Pick], Clustering]:
    """Cluster (N, D) features and return one representative per cluster (see the module docstring)."""
    clustering = fit_bisecting_kmeans(features, n_clusters, seed)
    return pick_representatives(features, clustering), clustering
