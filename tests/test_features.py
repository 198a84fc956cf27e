"""Networks built by the evaluators equal the reference packages' own loading paths on the same weights."""

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluators.features import EXTRACTORS, build_tf_inception, build_torchvision_inception, tf_inception_float_forward
from evaluators.lpips_metric import lpips_distance
from misato.lpips_network import build_lpips
from misato.weights import resolve


def _images(n=3, size=80):
    from skimage import data

    photo = data.coffee()
    return [np.ascontiguousarray(photo[i * 20 : i * 20 + size, i * 30 : i * 30 + size]) for i in range(n)]


def _hub(monkeypatch, tmp_path, src: str, name: str) -> None:
    """Place a file in a fresh torch-hub cache, where torchvision/lpips look for pretrained weights."""
    folder = tmp_path / "hub-home" / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, folder / name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub-home"))
    torch.hub.set_dir(str(tmp_path / "hub-home" / "hub"))


def test_lpips_equals_lpips_package(random_weights, monkeypatch, tmp_path):
    import lpips

    _hub(monkeypatch, tmp_path, random_weights["alexnet-torchvision"], "alexnet-owt-7be5be79.pth")
    reference = lpips.LPIPS(net="alex", verbose=False).eval()  # loads the backbone through torchvision's cache
    ours = build_lpips(resolve("alexnet-torchvision", random_weights["alexnet-torchvision"]), resolve("lpips-alex-lin"))
    a, b = (torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2).contiguous() for x in (_images(), _images()[1:] + _images()[:1]))
    expected = reference(a.float() / 127.5 - 1, b.float() / 127.5 - 1).flatten()
    got = lpips_distance(ours, a, b)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert float(got.min()) > 0


def test_lpips_distance_is_the_package_forward_bit_for_bit(random_weights):
    """The table-driven input scaling and in-place head give `lpips.LPIPS.forward`'s values exactly, for both value
    ranges, in both memory layouts, on bytes 0 to 255."""
    from misato.devices import to_inference_layout

    built = build_lpips(resolve("alexnet-torchvision", random_weights["alexnet-torchvision"]), resolve("lpips-alex-lin"))
    a = torch.arange(3 * 3 * 64 * 72).reshape(3, 3, 64, 72).remainder(256).to(torch.uint8)
    b = torch.from_numpy(np.stack(_images(3, size=72))[:, :64]).permute(0, 3, 1, 2).contiguous()
    for model in (built, to_inference_layout(copy.deepcopy(built), torch.device("cpu"))):
        for low, high in ((-1.0, 1.0), (0.0, 1.0)):
            scale = lambda x: x.float() / 255.0 * (high - low) + low  # noqa: E731
            with torch.inference_mode():
                expected = model(scale(a), scale(b)).flatten()
            got = lpips_distance(model, a, b, (low, high))
            assert torch.equal(got, expected), (low, high, got - expected)
    built.spatial = True
    with pytest.raises(ValueError, match="spatial average only"):
        lpips_distance(built, a, b)


def test_lpips_refuses_float_inputs(random_weights):
    ours = build_lpips(resolve("alexnet-torchvision", random_weights["alexnet-torchvision"]), resolve("lpips-alex-lin"))
    with pytest.raises(ValueError, match="uint8"):
        lpips_distance(ours, torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def test_networks_built_empty_refuse_files_with_missing_tensors(random_weights, tmp_path):
    """Networks are built on the meta device and filled from their files: a file lacking a tensor is named in the
    error, never left uninitialised or filled with random values."""
    import lpips

    heads = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    del heads["lin3.model.1.weight"]
    torch.save(heads, tmp_path / "heads.pth")
    backbone = resolve("alexnet-torchvision", random_weights["alexnet-torchvision"])
    with pytest.raises(ValueError, match=r"heads\.pth: no values for lin3\.model\.1\.weight"):
        build_lpips(backbone, resolve("lpips-alex-lin", tmp_path / "heads.pth"))
    heads["lin3.model.1.weight"], heads["lin9.model.1.weight"] = torch.zeros(1, 256, 1, 1), torch.zeros(1, 4, 1, 1)
    torch.save(heads, tmp_path / "heads.pth")
    with pytest.raises(ValueError, match=r"heads\.pth: not LPIPS linear heads .*lin9"):
        build_lpips(backbone, resolve("lpips-alex-lin", tmp_path / "heads.pth"))
    state = torch.load(random_weights["inception-torchvision"], weights_only=True)
    del state["Mixed_7c.branch_pool.conv.weight"]
    torch.save(state, tmp_path / "inception.pth")
    with pytest.raises(ValueError, match=r"inception\.pth: not a torchvision Inception v3 state dict: missing keys .*Mixed_7c.branch_pool.conv.weight"):
        build_torchvision_inception(tmp_path / "inception.pth")
    model = build_lpips(backbone, resolve("lpips-alex-lin"))
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    torch.testing.assert_close(model.scaling_layer.shift.flatten(), torch.tensor([-0.030, -0.088, -0.188]))


def test_torchvision_inception_equals_official_loading(random_weights, monkeypatch, tmp_path):
    """The asuka extractor equals `inception_v3(weights=IMAGENET1K_V1)` + fc=Identity + weights.transforms()."""
    from torchvision.models import Inception_V3_Weights, inception_v3

    _hub(monkeypatch, tmp_path, random_weights["inception-torchvision"], "inception_v3_google-0cc3c7bd.pth")
    reference = inception_v3(weights=Inception_V3_Weights.IMAGENET1K_V1)
    reference.fc = torch.nn.Identity()
    reference.eval()
    transform = Inception_V3_Weights.DEFAULT.transforms()
    images = _images(2, size=120)
    with torch.no_grad():
        expected = reference(torch.stack([transform(Image.fromarray(x)) for x in images]))
    extractor = EXTRACTORS["inception-torchvision"](resolve("inception-torchvision", random_weights["inception-torchvision"]), torch.device("cpu"))
    pre = extractor.preprocess()
    got = extractor.forward(torch.stack([pre(x) for x in images]))
    # Batch norms folded and channels-last layout: float rounding (measured 2e-5 of the features' scale).
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_tf_inception_extractor_equals_torch_fidelity_network(random_weights):
    """The comod extractor (channels-last layout) gives torch-fidelity's network's features in its own layout, to
    oneDNN's accumulation order in the other layout (measured: 1.7e-5 of the features' scale)."""
    net = build_tf_inception(random_weights["inception-tf"]).eval()
    x = torch.from_numpy(np.stack(_images(2, size=120))).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        expected = net(x)[0]
    extractor = EXTRACTORS["inception-tf"](resolve("inception-tf", random_weights["inception-tf"]), torch.device("cpu"))
    assert next(extractor.net.parameters()).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(extractor.forward(x), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_folded_batch_norms_keep_the_features(random_weights):
    """Batch norms folded into their convolutions (with non-trivial statistics, as real weights have) give the
    unfolded network's features to float rounding; none is left."""
    from misato.devices import fold_batch_norms, to_inference_layout

    for key, build in (("inception-tf", build_tf_inception), ("inception-torchvision", build_torchvision_inception)):
        torch.manual_seed(0)
        net = build(random_weights[key]).eval()
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.2, 2.0)
            bn.weight.data.uniform_(0.5, 1.5), bn.bias.data.uniform_(-0.2, 0.2)
        x = torch.rand(2, 3, 299, 299) * 255 if key == "inception-tf" else torch.rand(2, 3, 299, 299) * 4 - 2
        forward = (lambda n, v: n(v.to(torch.uint8))[0]) if key == "inception-tf" else (lambda n, v: n(v))
        with torch.inference_mode():
            expected = forward(net, x)
            folded = to_inference_layout(copy.deepcopy(net), torch.device("cpu"))
            got = forward(folded, x)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fold_batch_norms(net).modules()) == 0
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))


def test_tf_inception_float_path_equals_uint8_path(random_weights):
    net = build_tf_inception(random_weights["inception-tf"])
    x = torch.from_numpy(np.stack([np.asarray(Image.fromarray(i).resize((299, 299))) for i in _images(2)])).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        expected = net(x)[0]
        got = tf_inception_float_forward(net, x.float())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="299"):
        tf_inception_float_forward(net, torch.zeros(1, 3, 64, 64))


def test_clean_resize_is_clean_fid(random_weights):
    from cleanfid.resize import make_resizer

    extractor = EXTRACTORS["inception-tf-clean"](resolve("inception-tf", random_weights["inception-tf"]), torch.device("cpu"))
    image = _images(1)[0]
    expected = make_resizer("PIL", False, "bicubic", (299, 299))(image)
    got = extractor.preprocess()(image)
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected)


def test_tf_inception_loads_weights_only(random_weights, tmp_path):
    """A pickle that is not a plain state dict is refused instead of unpickled."""
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1), "obj": Path("/")}, bad)
    with pytest.raises(Exception):
        build_tf_inception(bad)
