"""Result files for the leaderboard tests, produced by the result record itself (`ResultRecord.to_json`) and the
scorer's thumbnail writer, so the fixtures can never drift from what `misato score` writes.

The numbers are made up (not measurements of any method). `evil` has a method name full of markup (escaping
tests); `telea` on `my-photos` is a custom dataset (its own column group) with metrics listed as unavailable.
MISATO results carry per-image CSVs and thumbnails of samples 0000, 0500, 1000, 1500 and 1600 (64 x 64: a
gradient image, a box hole, each method's fill a random flat colour).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from evaluators.metrics import METRICS, PER_IMAGE
from evaluators.record import DatasetInfo, ResultRecord
from evaluators.thumbnails import thumbnails
from misato.io import atomic_write_bytes, atomic_write_json, atomic_write_text

EVIL = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>"
DOMAIN_STEMS = {"landscape": "0000", "indoor": "0500", "building": "1000", "background": "1500"}
THUMBNAIL_STEMS = (*DOMAIN_STEMS.values(), "1600")
MISSING_INCEPTION = ("needs inception-tf (weights-inception-2015-12-05-6726825d.pth): run `misato weights fetch "
                     "inception-tf`, or put weights-inception-2015-12-05-6726825d.pth in $MISATO_WEIGHTS_DIR (default "
                     "~/.cache/misato/weights), or pass --weight inception-tf=PATH")

ROWS: list[dict] = [
    dict(method='asuka-sd', dataset='misato-512', kind='MISATO',
         unavailable=[],
         overall={'n': 4, 'lpips': 0.148, 'fid': 11.873, 'u_ids': 0.352, 'p_ids': 0.241, 'psnr': 21.02, 'ssim': 0.775, 'grad_error': 199.2, 'clip_score': 0.921, 'kid': 0.0012, 'kid_std': 0.0002},
         per_domain={
             'landscape': {'n': 1, 'lpips': 0.139, 'fid': 24.2, 'psnr': 21.8, 'ssim': 0.795, 'grad_error': 190.8, 'clip_score': 0.93},
             'indoor': {'n': 1, 'lpips': 0.152, 'fid': 26.8, 'psnr': 20.61, 'ssim': 0.766, 'grad_error': 207.6, 'clip_score': 0.915},
             'building': {'n': 1, 'lpips': 0.15, 'fid': 25.1, 'psnr': 20.77, 'ssim': 0.763, 'grad_error': 200.8, 'clip_score': 0.918},
             'background': {'n': 1, 'lpips': 0.151, 'fid': 27.9, 'psnr': 20.9, 'ssim': 0.776, 'grad_error': 197.6, 'clip_score': 0.921},
         }),
    dict(method='asuka-sd', dataset='places2-val', kind='Places2',
         unavailable=[],
         overall={'n': 36500, 'lpips': 0.181, 'fid': 1.302, 'u_ids': 0.409, 'p_ids': 0.29, 'psnr': 20.02, 'ssim': 0.688},
         per_domain={}),
    dict(method=EVIL, dataset='misato-512', kind='MISATO',
         unavailable=[],
         overall={'n': 4, 'lpips': 0.199, 'fid': 20.115, 'u_ids': 0.177, 'p_ids': 0.088, 'psnr': 20.11, 'ssim': 0.752, 'grad_error': 244.4, 'clip_score': 0.873},
         per_domain={
             'landscape': {'n': 1, 'lpips': 0.188, 'psnr': 20.7, 'ssim': 0.77, 'grad_error': 236.0, 'clip_score': 0.881},
             'indoor': {'n': 1, 'lpips': 0.205, 'psnr': 19.8, 'ssim': 0.741, 'grad_error': 252.0, 'clip_score': 0.866},
             'building': {'n': 1, 'lpips': 0.201, 'psnr': 19.95, 'ssim': 0.744, 'grad_error': 248.0, 'clip_score': 0.87},
             'background': {'n': 1, 'lpips': 0.202, 'psnr': 19.99, 'ssim': 0.753, 'grad_error': 241.6, 'clip_score': 0.875},
         }),
    dict(method='lama', dataset='misato-512', kind='MISATO',
         unavailable=[],
         overall={'n': 4, 'lpips': 0.161, 'fid': 15.902, 'u_ids': 0.251, 'p_ids': 0.262, 'psnr': 21.37, 'ssim': 0.781, 'grad_error': 204.8, 'clip_score': 0.902, 'kid': 0.0031, 'kid_std': 0.0004},
         per_domain={
             'landscape': {'n': 1, 'lpips': 0.142, 'fid': 30.1, 'psnr': 22.1, 'ssim': 0.802, 'grad_error': 192.4, 'clip_score': 0.911},
             'indoor': {'n': 1, 'lpips': 0.171, 'fid': 33.4, 'psnr': 20.85, 'ssim': 0.771, 'grad_error': 213.2, 'clip_score': 0.894},
             'building': {'n': 1, 'lpips': 0.165, 'fid': 31.9, 'psnr': 21.02, 'ssim': 0.769, 'grad_error': 211.6, 'clip_score': 0.899},
             'background': {'n': 1, 'lpips': 0.166, 'fid': 35.2, 'psnr': 21.51, 'ssim': 0.782, 'grad_error': 202.0, 'clip_score': 0.904},
         }),
    dict(method='lama', dataset='places2-val', kind='Places2',
         unavailable=[],
         overall={'n': 36500, 'lpips': 0.205, 'fid': 6.512, 'u_ids': 0.251, 'p_ids': 0.055, 'psnr': 20.51, 'ssim': 0.701},
         per_domain={}),
    dict(method='telea', dataset='misato-512', kind='MISATO',
         unavailable=['fid'],
         overall={'n': 4, 'lpips': 0.214, 'u_ids': 0.102, 'p_ids': 0.041, 'psnr': 19.84, 'ssim': 0.744, 'grad_error': 293.2, 'clip_score': 0.851},
         per_domain={
             'landscape': {'n': 1, 'lpips': 0.201, 'psnr': 20.41, 'ssim': 0.761, 'grad_error': 280.8, 'clip_score': 0.862},
             'indoor': {'n': 1, 'lpips': 0.222, 'psnr': 19.52, 'ssim': 0.735, 'grad_error': 300.4, 'clip_score': 0.844},
             'building': {'n': 1, 'lpips': 0.219, 'psnr': 19.66, 'ssim': 0.738, 'grad_error': 299.2, 'clip_score': 0.848},
             'background': {'n': 1, 'lpips': 0.214, 'psnr': 19.77, 'ssim': 0.742, 'grad_error': 292.4, 'clip_score': 0.85},
         }),
    dict(method='telea', dataset='my-photos', kind='custom',
         unavailable=['fid', 'p_ids', 'u_ids'],
         overall={'n': 12, 'lpips': 0.301, 'psnr': 18.02, 'ssim': 0.655, 'grad_error': 320.8},
         per_domain={}),
]


# 95% intervals of the lama MISATO fixture (made up, like its values): rendered as "value ± half-width".
INTERVALS: dict[str, dict[str, dict[str, list[float]]]] = {
    "lama": {"overall": {"lpips": [0.151, 0.171], "fid": [13.902, 17.902], "psnr": [21.07, 21.67]},
             "indoor": {"lpips": [0.160, 0.182]}},
}


def sample_images(stem: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ground truth uint8 (64, 64, 3), hole float32 (64, 64) 1 = hole, scored composite uint8 (64, 64, 3))."""
    yy, xx = np.mgrid[0:64, 0:64]
    gt = np.stack([xx * 3, yy * 3, (xx + yy) * 2], -1).astype(np.uint8)
    hole = np.zeros((64, 64), np.float32)
    hole[16:48, 20:44] = 1
    scored = gt.copy()
    scored[16:48, 20:44] = np.random.default_rng([seed, int(stem)]).integers(0, 256, 3)
    return gt, hole, scored


def file_stem(row: dict) -> str:
    """The result file's stem (the evil method's file is named `evil`)."""
    return f"{'evil' if row['method'] == EVIL else row['method']}__{row['dataset']}__comod"


def record(row: dict, index: int, folder: Path) -> ResultRecord:
    """The result record of one ROWS entry; writes its per-image CSV and thumbnails into `folder`."""
    misato = row["kind"] == "MISATO"
    base = file_stem(row)
    thumbs: dict[str, dict[str, str]] = {}
    if misato:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        columns = [m for m in PER_IMAGE if m in row["overall"]]
        writer.writerow(["stem", "domain", *columns])
        for domain, stem in DOMAIN_STEMS.items():
            writer.writerow([stem, domain, *(row["per_domain"][domain].get(m, "") for m in columns)])
        atomic_write_text(folder / f"{base}.per_image.csv", buffer.getvalue())
        for stem in THUMBNAIL_STEMS:
            for role, data in thumbnails(*sample_images(stem, index)).items():
                atomic_write_bytes(folder / f"{base}.thumbs" / f"{stem}.{role}.jpg", data)
                thumbs.setdefault(stem, {})[role] = f"{base}.thumbs/{stem}.{role}.jpg"
    return ResultRecord(
        method=row["method"],
        dataset=DatasetInfo(name=row["dataset"], kind=row["kind"], root=f"/nonexistent/{row['dataset']}",
                            content_hash="0" * 64, n_images=row["overall"]["n"],
                            domains=list(row["per_domain"]), resolution=512 if misato else None),
        protocol={"name": "comod", "version": 1, "feature_net": "inception-tf"},
        overall=row["overall"],
        per_domain=row["per_domain"],
        paste_back=True,
        higher_is_better={m: METRICS[m].higher_is_better for m in METRICS if METRICS[m].aggregate != "study"},
        unavailable={m: MISSING_INCEPTION for m in row["unavailable"]},
        predictions=f"/nonexistent/predictions/{row['method']}",
        per_image_csv=f"{base}.per_image.csv" if misato else None,
        thumbnails=thumbs,
        intervals=INTERVALS.get(row["method"], {}) if misato else {},
        per_hole_ratio={"30-40%": {"n": 4, **{m: v for m, v in row["overall"].items() if m in PER_IMAGE}}}
        if misato else {},
        bootstrap={"resamples": 1000, "set_resamples": 20, "seed": 0, "level": 0.95} if misato else {},
        versions={"misato-bench": "0.1.0"},
        seeds={"kid": 2020},
        git_commit="fixture",
        created="2026-11-24T15:00:00Z",
    )


def write_fixtures(folder: Path) -> Path:
    """Write every fixture result (JSON, per-image CSV, thumbnails) into `folder`; returns it."""
    for index, row in enumerate(ROWS):
        result = record(row, index, folder)
        atomic_write_json(folder / f"{file_stem(row)}.json", result.to_json())
    return folder
