"""pytorch-fid's InceptionV3 re-implemented without torchvision (sdm_neuro.evaluation.inception).

No real weights here (and none are ever downloaded): the key set and shapes are checked against
numbers transcribed from the sources, and loading / inference run on random state dicts.
Sources: torchvision ``torchvision/models/inception.py`` (``Inception3``, ``InceptionAux``,
``BasicConv2d``; ``Inception_V3_Weights.IMAGENET1K_V1.meta["num_params"] == 27161264``) and
pytorch-fid ``src/pytorch_fid/inception.py`` (``fid_inception_v3``: ``Inception3(num_classes=
1008, aux_logits=False)`` with Mixed_5b-d / 6b-e / 7b / 7c replaced, weights loaded strictly).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sdm_neuro.errors import CheckpointError, CheckpointMismatchError
from sdm_neuro.evaluation.inception import (
    FIDInceptionE_2,
    InceptionFeatures,
    _avg_pool_no_pad,
    fid_inception_v3,
    inception_features,
    load_inception,
)

# torchvision Inception3(num_classes=1000, aux_logits=True) has 27_161_264 parameters. Remove
# InceptionAux(768, 1000) = BasicConv2d(768, 128, k=1) + BasicConv2d(128, 768, k=5) +
# Linear(768, 1000) (BatchNorm: weight + bias per channel), then widen fc 1000 -> 1008.
_AUX = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)
N_PARAMS = 27_161_264 - _AUX + 8 * 2048 + 8
N_CONVS = 94  # stem 5, Mixed_5b-d 3x7, 6a 4, 6b-e 4x10, 7a 6, 7b-c 2x9

SHAPES = {  # transcribed from the module definitions in torchvision's inception.py
    "Conv2d_1a_3x3.conv.weight": [32, 3, 3, 3],
    "Conv2d_1a_3x3.bn.running_var": [32],
    "Conv2d_4a_3x3.conv.weight": [192, 80, 3, 3],
    "Mixed_5b.branch_pool.conv.weight": [32, 192, 1, 1],
    "Mixed_5d.branch5x5_2.bn.running_mean": [64],
    "Mixed_6a.branch3x3.conv.weight": [384, 288, 3, 3],
    "Mixed_6b.branch7x7_2.conv.weight": [128, 128, 1, 7],
    "Mixed_6e.branch7x7dbl_2.conv.weight": [192, 192, 7, 1],
    "Mixed_7a.branch3x3_2.conv.weight": [320, 192, 3, 3],
    "Mixed_7b.branch3x3dbl_1.conv.weight": [448, 1280, 1, 1],
    "Mixed_7c.branch3x3_2b.conv.weight": [384, 384, 3, 1],
    "Mixed_7c.branch_pool.conv.weight": [192, 2048, 1, 1],
    "fc.weight": [1008, 2048],
    "fc.bias": [1008],
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Small CPU convs gain nothing from threads, and with a busy second core intra-op threading
    made these tests ~100x slower (spin-waiting workers); one thread keeps them well under 3 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def meta_state() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return InceptionFeatures().state_dict()


def _cheap_state(meta_state: dict[str, torch.Tensor], drop_nbt: bool = False) -> dict:
    """Right keys and shapes, one stored element per tensor (expanded views): tiny files."""
    return {k: torch.ones((), dtype=v.dtype).expand(v.shape) for k, v in meta_state.items()
            if not (drop_nbt and k.endswith("num_batches_tracked"))}


def _random_state(meta_state: dict[str, torch.Tensor], seed: int = 0) -> dict:
    """He-scaled convs and near-identity BatchNorms, so activations stay O(1) through the net."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, ref in meta_state.items():
        shape = tuple(ref.shape)
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
        elif key.endswith("conv.weight") or key == "fc.weight":
            out[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / math.prod(shape[1:]))
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("bn.weight"):
            out[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:  # bn.bias, running_mean, fc.bias
            out[key] = 0.1 * torch.randn(shape, generator=g)
    return out


def test_state_dict_keys_match_torchvision_inception3_1008_no_aux() -> None:
    model = fid_inception_v3()
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == N_PARAMS == 23_850_960
    assert not any(k.startswith("AuxLogits") for k in state)
    convs = [k for k in state if k.endswith(".conv.weight")]
    assert len(convs) == N_CONVS
    suffixes = ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                "bn.num_batches_tracked")
    expected = {c[: -len("conv.weight")] + s for c in convs for s in suffixes}
    assert set(state) == expected | {"fc.weight", "fc.bias"}
    for key, shape in SHAPES.items():
        assert list(state[key].shape) == shape, key


def test_fid_pooling_patches() -> None:
    # TF average pool ignores padding: a constant map stays constant at the borders.
    ones = torch.ones(1, 1, 5, 5)
    torch.testing.assert_close(_avg_pool_no_pad(ones), ones)
    # Mixed_7c's pool branch max-pools (pytorch-fid's FIDInceptionE_2 patch).
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = 9.0
    with torch.device("meta"):
        block = FIDInceptionE_2(1)
    assert block._pool(x)[0, 0, 1, 1] == 9.0


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory, meta_state: dict) -> Path:
    path = tmp_path_factory.mktemp("inception") / "random.pth"
    torch.save(_random_state(meta_state), path)
    return path


def test_load_random_weights_and_extract_features(random_weights: Path, meta_state: dict) -> None:
    model = load_inception(random_weights)
    assert isinstance(model, InceptionFeatures) and not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert model.state_dict().keys() == meta_state.keys()

    g = torch.Generator().manual_seed(1)
    gray = torch.rand(1, 1, 16, 16, generator=g) * 2 - 1
    color = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    feats = np.concatenate([inception_features(model, gray), inception_features(model, color)])
    assert feats.shape == (2, 2048) and feats.dtype == np.float64
    assert np.isfinite(feats).all() and feats.std() > 0
    assert not np.allclose(feats[0], feats[1])

    # Grayscale is repeated to RGB, and batching does not change the result.
    pair = torch.cat([gray, gray.flip(-1)])
    by_one = inception_features(model, pair, batch_size=1)
    np.testing.assert_allclose(by_one[0], feats[0], rtol=1e-5, atol=1e-6)
    rgb = inception_features(model, pair.expand(-1, 3, -1, -1), batch_size=2)
    np.testing.assert_allclose(rgb, by_one, rtol=1e-4, atol=1e-5)

    assert inception_features(model, color[:0]).shape == (0, 2048)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        inception_features(model, color * 255)
    with pytest.raises(ValueError, match="1 or 3"):
        inception_features(model, torch.zeros(1, 2, 16, 16))


def test_checkpoint_without_num_batches_tracked_loads(tmp_path: Path, meta_state: dict) -> None:
    path = tmp_path / "old.pth"
    torch.save(_cheap_state(meta_state, drop_nbt=True), path)
    assert path.stat().st_size < 1_000_000  # expanded views: the test stays cheap
    model = load_inception(path)
    assert model.Mixed_7c.branch_pool.bn.num_batches_tracked.item() == 0
    assert model.fc.weight.is_contiguous() and model.fc.weight.device.type == "cpu"


def _expect_error(path: Path, match: str, cls: type[Exception] = CheckpointError) -> None:
    with pytest.raises(cls, match=match) as info:
        load_inception(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_load_errors_name_the_file(tmp_path: Path, meta_state: dict) -> None:
    _expect_error(tmp_path / "absent.pth", "not found")
    _expect_error(tmp_path, "is a directory, not pytorch-fid's Inception weights")

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file")
    _expect_error(garbage, "cannot be loaded")

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"x": np.float64}, unsafe)  # a global outside the weights-only allowlist
    _expect_error(unsafe, "cannot be loaded")

    for name, obj in (("list.pth", [torch.zeros(1)]), ("ints.pth", {"fc.weight": 1})):
        torch.save(obj, tmp_path / name)
        _expect_error(tmp_path / name, "expected a state_dict")

    state = _cheap_state(meta_state)
    missing = {k: v for k, v in state.items() if not k.startswith("Mixed_7c.")}
    torch.save(missing, tmp_path / "missing.pth")
    _expect_error(tmp_path / "missing.pth", r"missing 45 Inception keys: Mixed_7c\..*45 in all",
                  CheckpointMismatchError)

    extra = dict(state, **{"AuxLogits.fc.weight": torch.zeros(1008, 768)})
    torch.save(extra, tmp_path / "extra.pth")
    _expect_error(tmp_path / "extra.pth", "1 unexpected keys.*AuxLogits.fc.weight",
                  CheckpointMismatchError)

    wrong = dict(state, **{"fc.weight": torch.zeros(1000, 2048)})
    torch.save(wrong, tmp_path / "wrong.pth")
    _expect_error(tmp_path / "wrong.pth", r"fc.weight has shape \[1000, 2048\], expected "
                  r"\[1008, 2048\]", CheckpointMismatchError)

    nan = dict(state, **{"fc.bias": torch.full((1008,), float("nan"))})
    torch.save(nan, tmp_path / "nan.pth")
    _expect_error(tmp_path / "nan.pth", "fc.bias contains NaN")


# --- FID statistics files (pytorch-fid's .npz) --------------------------------------------------

def test_evaluate_measures_inception_fid_against_fid_stats_and_writes_the_samples(
        tmp_path: Path, random_weights: Path) -> None:
    from sdm_neuro.run import evaluate

    # A reference with zero covariance: then FID = |mu - mu_ref|^2 + tr(sigma) exactly, an
    # expected value that needs no matrix square root (each 2048-d one takes about 11 s here).
    ref_mu = np.random.default_rng(0).normal(size=2048)
    np.savez(tmp_path / "ref.npz", mu=ref_mu, sigma=np.zeros((2048, 2048)))
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    np.save(tmp_path / "x.npy", x.numpy())
    evaluate(samples=tmp_path / "x.npy", inception_weights=random_weights,
             fid_stats=tmp_path / "ref.npz", kid_subsets=2, kid_subset_size=2,
             out=tmp_path / "e", quiet=True)
    written = np.load(tmp_path / "e" / "fid_stats.npz")
    assert sorted(written.files) == ["mu", "sigma"]
    feats = np.asarray(inception_features(load_inception(random_weights), x), np.float64)
    mu, sigma = feats.mean(axis=0), np.cov(feats, rowvar=False)
    assert np.allclose(written["mu"], mu, rtol=1e-12, atol=1e-12)
    assert np.allclose(written["sigma"], sigma, rtol=1e-12, atol=1e-12)
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    # against the file's statistics, not the training images' features
    assert report["rows"]["samples"]["inception_fid"] == pytest.approx(
        float(((mu - ref_mu) ** 2).sum() + np.trace(sigma)), rel=1e-9)
    assert report["fid_stats"]["reference"] == str(tmp_path / "ref.npz")


@pytest.mark.parametrize(("content", "message"), [
    ({"mu": np.zeros(4)}, "need arrays 'mu' and 'sigma'"),
    ({"mu": np.zeros(4), "sigma": np.zeros((4, 3))}, r"'mu' must be \[D\] and 'sigma' \[D, D\]"),
    ({"mu": np.zeros(2), "sigma": np.array([[1.0, 2.0], [0.0, 1.0]])}, "not symmetric"),
    ({"mu": np.array([np.nan, 0]), "sigma": np.eye(2)}, "NaN or infinity"),
    ({"mu": np.zeros(4), "sigma": np.eye(4)}, "statistics of 4-dimensional features"),
    (None, "not a readable .npz"),
])
def test_malformed_fid_stats_are_refused_before_sampling(tmp_path: Path, random_weights: Path,
                                                         content, message) -> None:
    from sdm_neuro.errors import UsageError
    from sdm_neuro.run import evaluate

    path = tmp_path / "stats.npz"
    if content is None:
        path.write_bytes(b"not a zip")
    else:
        np.savez(path, **content)
    with pytest.raises(UsageError, match=message):
        evaluate(num=4, steps=5, sampler="ddim", inception_weights=random_weights,
                 fid_stats=path, out=tmp_path / "e", quiet=True)
    assert not (tmp_path / "e").exists()


def test_fid_stats_need_inception_weights(tmp_path: Path) -> None:
    from sdm_neuro.errors import UsageError
    from sdm_neuro.run import evaluate

    np.savez(tmp_path / "ref.npz", mu=np.zeros(8), sigma=np.eye(8))
    with pytest.raises(UsageError, match="add --inception-weights"):
        evaluate(num=4, fid_stats=tmp_path / "ref.npz", out=tmp_path / "e", quiet=True)
