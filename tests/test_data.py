"""Dataset folders: the released MISATO layout (both mask namings, jpg images), stem pairing, domains, errors."""

import numpy as np
import pytest
from PIL import Image

from misato.data import DatasetError, domain_of_index, load_dataset, load_pair_folders
from misato.io import ImageFileError, read_mask, read_rgb


def _write(folder, stem, suffix=".png", size=8, value=255):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(folder / f"{stem}{suffix}")


def test_domains_by_index():
    assert [domain_of_index(i) for i in (0, 499, 500, 999, 1000, 1499, 1500, 1999)] == [
        "landscape", "landscape", "indoor", "indoor", "building", "building", "background", "background"]
    with pytest.raises(ValueError):
        domain_of_index(2000)


def test_released_layout_512_and_1024(tmp_path):
    for stem in ("0000", "0501", "1500"):
        _write(tmp_path / "512" / "image", stem, ".jpg")
        _write(tmp_path / "512" / "mask", stem)
        _write(tmp_path / "1024" / "image", stem)
        _write(tmp_path / "1024" / "mask", "00" + stem)
    d512 = load_dataset(tmp_path)
    assert [s.stem for s in d512.samples] == ["0000", "0501", "1500"]
    assert [s.domain for s in d512.samples] == ["landscape", "indoor", "background"]
    assert d512.samples[0].image_path.suffix == ".jpg" and d512.name.endswith("-512")
    d1024 = load_dataset(tmp_path, resolution=1024)
    with pytest.raises(DatasetError, match="resolution 512 asked, but this folder holds image/ and mask/ itself"):
        load_dataset(tmp_path / "1024", resolution=512)  # never silently another resolution than asked
    assert d1024.samples[1].mask_path.name == "000501.png"
    assert d1024.domains == ["landscape", "indoor", "background"]


def test_pair_folders_by_stem_without_domains(tmp_path):
    for stem in ("b", "a"):
        _write(tmp_path / "image", stem)
        _write(tmp_path / "mask", stem)
    dataset = load_pair_folders(tmp_path / "image", tmp_path / "mask")
    assert [s.stem for s in dataset.samples] == ["a", "b"] and dataset.domains == []


def test_unmatched_and_duplicate_files(tmp_path):
    _write(tmp_path / "image", "a")
    _write(tmp_path / "image", "b")
    _write(tmp_path / "mask", "a")
    with pytest.raises(DatasetError, match=r"no mask for 1 image\(s\), e.g. \['b'\]"):
        load_dataset(tmp_path)
    _write(tmp_path / "mask", "b")
    _write(tmp_path / "mask", "c")
    with pytest.raises(DatasetError, match="without an image"):
        load_dataset(tmp_path)
    (tmp_path / "mask" / "c.png").unlink()
    _write(tmp_path / "image", "a", ".jpg")
    with pytest.raises(DatasetError, match="share the stem 'a'"):
        load_dataset(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="expected image/ and mask/"):
        load_dataset(tmp_path / "empty")


def test_content_hash_tracks_bytes(tmp_path):
    _write(tmp_path / "image", "a")
    _write(tmp_path / "mask", "a")
    first = load_dataset(tmp_path).content_hash()
    assert load_dataset(tmp_path).content_hash() == first
    _write(tmp_path / "image", "a", value=3)
    assert load_dataset(tmp_path).content_hash() != first
    assert load_dataset(tmp_path, mask_hole_is_white=False).content_hash() != load_dataset(tmp_path).content_hash()


def test_mask_threshold_and_convention(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8)).save(path)
    assert read_mask(path).tolist() == [[0, 0, 1, 1]]
    assert read_mask(path, mask_hole_is_white=False).tolist() == [[1, 1, 0, 0]]
    Image.fromarray(np.array([[0, 40000]], np.uint16)).save(tmp_path / "m16.png")
    with pytest.raises(ImageFileError, match="16-bit"):
        read_mask(tmp_path / "m16.png")


def test_read_rgb_is_strict(tmp_path):
    Image.new("RGBA", (2, 2)).save(tmp_path / "a.png")
    with pytest.raises(ImageFileError, match="RGBA"):
        read_rgb(tmp_path / "a.png")
    Image.new("P", (2, 2)).save(tmp_path / "p.png")
    assert read_rgb(tmp_path / "p.png").shape == (2, 2, 3)
    (tmp_path / "x.png").write_bytes(b"junk")
    with pytest.raises(ImageFileError, match="unreadable"):
        read_rgb(tmp_path / "x.png")
