"""A scoring pass over a shard is cached by its inputs: an interrupted or repeated run does not redo it."""

import pytest
from PIL import Image

from evaluators import scoring
from evaluators.scoring import ScoreConfig, score
from misato.data import load_dataset
from misato.io import read_rgb

METRICS = ("lpips", "fid", "u_ids", "p_ids", "kid", "psnr", "ssim", "grad_error")


@pytest.fixture
def forwards(monkeypatch):
    """Counts images through the stand-in Inception."""
    from conftest import TinyFeatures

    calls: list[int] = []
    original = TinyFeatures.forward
    monkeypatch.setattr(TinyFeatures, "forward", lambda self, batch: calls.append(len(batch)) or original(self, batch))
    return calls


def _config(weights, **kwargs) -> ScoreConfig:
    return ScoreConfig(weights=weights, metrics=METRICS, protocol="tiny-features", device="cpu", batch_size=3,
                       progress=False, **kwargs)


def test_an_interrupted_run_resumes_after_the_pass(tiny_dataset, tiny_predictions, tmp_path, tiny_features,
                                                   forwards, monkeypatch):
    dataset = load_dataset(tiny_dataset)
    config = _config(tiny_features)
    original = scoring._compute_set_metrics

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scoring, "_compute_set_metrics", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score(dataset, tiny_predictions, "m", tmp_path / "a", config)
    assert sum(forwards) == 16 and not (tmp_path / "a").exists()  # the pass ran, nothing was written
    monkeypatch.setattr(scoring, "_compute_set_metrics", original)
    forwards.clear()
    resumed = score(dataset, tiny_predictions, "m", tmp_path / "a", config)
    assert forwards == [] and resumed.record.timing["forward_s"] == 0.0
    assert resumed.record.timing["pass_from_cache"] is True

    fresh = score(dataset, tiny_predictions, "m", tmp_path / "b", _config(tiny_features, use_cache=False))
    assert sum(forwards) == 16 and fresh.record.timing["pass_from_cache"] is False
    assert resumed.record.overall == fresh.record.overall
    assert resumed.record.per_domain == fresh.record.per_domain
    assert resumed.record.intervals == fresh.record.intervals
    assert resumed.csv_path.read_text() == fresh.csv_path.read_text()
    for stem, roles in fresh.record.thumbnails.items():
        for role, relative in roles.items():
            assert (tmp_path / "a" / resumed.record.thumbnails[stem][role]).read_bytes() == \
                (tmp_path / "b" / relative).read_bytes()


def test_any_changed_input_redoes_the_pass(tiny_dataset, tiny_predictions, tmp_path, tiny_features, forwards):
    dataset = load_dataset(tiny_dataset)
    score(dataset, tiny_predictions, "m", tmp_path, _config(tiny_features))
    forwards.clear()
    first = dataset.samples[0].stem
    path = tiny_predictions / f"{first}.png"
    image = read_rgb(path)
    image[0, 0] = 255 - image[0, 0]
    Image.fromarray(image).save(path)  # one pixel of one prediction
    changed = score(dataset, tiny_predictions, "m", tmp_path, _config(tiny_features))
    assert changed.record.timing["pass_from_cache"] is False and sum(forwards) == 8  # fake side; real from cache
    forwards.clear()
    for other in (_config(tiny_features, paste_back=False), _config(tiny_features, thumbnail_samples=(first,)),
                  ScoreConfig(**{**_config(tiny_features).__dict__, "metrics": ("fid", "psnr")})):
        assert score(dataset, tiny_predictions, "m", tmp_path, other).record.timing["pass_from_cache"] is False
