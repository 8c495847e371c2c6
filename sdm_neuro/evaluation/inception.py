"""The InceptionV3 of pytorch-fid, in pure torch (torchvision is not a dependency).

FID numbers are only comparable with published ones when features come from the exact network
of pytorch-fid (TensorFlow's 2015-12-05 Inception graph): torchvision's ``Inception3`` layout
with ``num_classes=1008``, ``aux_logits=False`` and four patched blocks (``FIDInceptionA/C/E_1``
average-pool without counting padding, ``FIDInceptionE_2`` max-pools its pool branch). Module
names mirror torchvision's so that ``state_dict()`` keys are exactly those of pytorch-fid's weight
file ``pt_inception-2015-12-05-6726825d.pth``; the weights are never downloaded here, the user
passes the file to :func:`load_inception`.

Sources: ``mseitzer/pytorch-fid`` ``src/pytorch_fid/inception.py`` and ``pytorch/vision``
``torchvision/models/inception.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import CheckpointError, CheckpointMismatchError
from ..fileio import regular_file

FEATURE_DIM = 2048
MAX_WEIGHTS_BYTES = 512 << 20  # pytorch-fid's weight file is 95 MB
INPUT_SIZE = 299
NUM_CLASSES = 1008  # the TF graph's 1000 ImageNet classes + 8 unused; fc is kept for the keys
# The weight file may predate BatchNorm's ``num_batches_tracked`` buffer (PyTorch 0.4.1);
# torch's own loader fills it in for such files, and it never affects eval-mode outputs.
_OPTIONAL_SUFFIX = ".num_batches_tracked"
_RANGE_TOL = 1e-3


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm(eps=1e-3) + ReLU, as torchvision's block of the same name."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False,
                              **kwargs)  # type: ignore[arg-type]
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg_pool_no_pad(x: Tensor) -> Tensor:
    """TensorFlow's 3x3 average pool, which does not count the zero padding (the FID patch)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """torchvision ``InceptionA`` with pytorch-fid's padding-exclusive average pool."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_no_pad(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """torchvision ``InceptionB`` (grid reduction 35 -> 17), unpatched in pytorch-fid."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        b3d = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b3d, bp], 1)


class FIDInceptionC(nn.Module):
    """torchvision ``InceptionC`` with pytorch-fid's padding-exclusive average pool."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            b7d = layer(b7d)
        bp = self.branch_pool(_avg_pool_no_pad(x))
        return torch.cat([b1, b7, b7d, bp], 1)


class InceptionD(nn.Module):
    """torchvision ``InceptionD`` (grid reduction 17 -> 8), unpatched in pytorch-fid."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class _InceptionE(nn.Module):
    """torchvision ``InceptionE`` layers; the subclasses differ only in the pool branch."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def _pool(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], 1)
        bp = self.branch_pool(self._pool(x))
        return torch.cat([b1, b3, b3d, bp], 1)


class FIDInceptionE_1(_InceptionE):
    """First ``InceptionE`` (Mixed_7b) with pytorch-fid's padding-exclusive average pool."""

    def _pool(self, x: Tensor) -> Tensor:
        return _avg_pool_no_pad(x)


class FIDInceptionE_2(_InceptionE):
    """Second ``InceptionE`` (Mixed_7c): the TF graph max-pools here (pytorch-fid's patch)."""

    def _pool(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionFeatures(nn.Module):
    """pytorch-fid's ``InceptionV3`` (pool3 block) with torchvision ``Inception3`` module names.

    ``forward`` takes images in [0, 1] like pytorch-fid (resize to 299x299 bilinear with
    ``align_corners=False``, then ``2x - 1``; one channel is repeated to RGB, as pytorch-fid's
    ``Image.convert("RGB")`` does for grayscale files) and returns the ``[N, 2048]`` output of the
    final average pool. ``fc`` is unused for features but kept so that the key set is that of the
    weight file, which pytorch-fid loads strictly.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE_1(1280)
        self.Mixed_7c = FIDInceptionE_2(2048)
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images [N, 1 or 3, H, W], got shape {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)


# pytorch-fid's name for the feature network, for readers coming from there.
InceptionV3 = InceptionFeatures


def fid_inception_v3() -> InceptionFeatures:
    """The FID Inception architecture with PyTorch's default (random) init; load real weights with
    :func:`load_inception` (unlike pytorch-fid's function of this name, nothing is downloaded)."""
    return InceptionFeatures()


def _short(exc: BaseException) -> str:
    """First line of an exception message (torch's unpickling errors span many lines)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _preview(keys: list[str], n: int = 5) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_inception(path: str | os.PathLike[str]) -> InceptionFeatures:
    """Load pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` into :class:`InceptionFeatures`.

    The file is read with ``weights_only=True`` (no pickled code runs). Like pytorch-fid's strict
    ``load_state_dict``, the key set must be exactly the model's (``fc`` included, no
    ``AuxLogits``), except that BatchNorm ``num_batches_tracked`` buffers may be absent. Returns the
    model in eval mode with gradients off. Every problem raises :class:`CheckpointError` (key or
    shape problems its subclass :class:`CheckpointMismatchError`) naming the file.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: Inception weight file not found (pytorch-fid's "
                              "pt_inception-2015-12-05-6726825d.pth)")
    regular_file(p, what="pytorch-fid's Inception weights", error=CheckpointError,
                 max_bytes=MAX_WEIGHTS_BYTES)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt / unsafe files
        raise CheckpointError(f"{p}: cannot be loaded as a weights-only torch file "
                              f"({_short(exc)})") from exc
    if not isinstance(obj, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{p}: expected a state_dict (a dict of name -> tensor), got "
                              f"{type(obj).__name__}")

    with torch.device("meta"):  # shapes only: skips the random init of 24M parameters
        model = InceptionFeatures()
    expected = model.state_dict()
    missing = [k for k in expected if k not in obj and not k.endswith(_OPTIONAL_SUFFIX)]
    if missing:
        raise CheckpointMismatchError(f"{p}: missing {len(missing)} Inception keys: "
                                      f"{_preview(missing)}")
    unexpected = [k for k in obj if k not in expected]
    if unexpected:
        raise CheckpointMismatchError(f"{p}: {len(unexpected)} unexpected keys (not in "
                                      f"pytorch-fid's InceptionV3): {_preview(unexpected)}")

    state: dict[str, Tensor] = {}
    for key, ref in expected.items():
        if key not in obj:  # an optional num_batches_tracked
            state[key] = torch.zeros((), dtype=ref.dtype)
            continue
        value = obj[key]
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointMismatchError(f"{p}: {key} has shape {list(value.shape)}, expected "
                                          f"{list(ref.shape)}")
        if ref.is_floating_point() and not value.is_floating_point():
            raise CheckpointError(f"{p}: {key} has dtype {value.dtype}, expected floating point")
        # contiguous() first: it materialises stride-0 views, on which isfinite is very slow.
        state[key] = value.to(ref.dtype).contiguous()
        if ref.is_floating_point() and not torch.isfinite(state[key]).all():
            raise CheckpointError(f"{p}: {key} contains NaN or infinity")
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False)
    return model.eval()


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def inception_features(model: InceptionFeatures, images: Tensor, batch_size: int = 50,
                       progress: bool = False) -> np.ndarray:
    """Pool3 features ``[N, 2048]`` (float64) of ``images`` ``[N, C, H, W]`` in [-1, 1].

    Images are the sampler's range [-1, 1]; they are mapped to [0, 1] and fed through the
    pytorch-fid preprocessing, so results match pytorch-fid on the same images saved losslessly
    (pytorch-fid reads 8-bit files: quantise first for exact comparability). Values more than
    1e-3 outside [-1, 1] raise (likely [0, 1] or [0, 255] data); smaller overshoot is clamped.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"expected images as a tensor [N, 1 or 3, H, W], got {shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if images.shape[0] == 0:
        return np.zeros((0, FEATURE_DIM), dtype=np.float64)
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [-1, 1], got dtype {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinity")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1 - _RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ValueError(f"images must be in [-1, 1], got values in [{lo:.4g}, {hi:.4g}]")

    from tqdm import tqdm

    device = _model_device(model)
    out = np.empty((images.shape[0], FEATURE_DIM), dtype=np.float64)
    starts = range(0, images.shape[0], batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, disable=not progress, desc="Inception features", unit="batch"):
            batch = images[start:start + batch_size].to(device=device, dtype=torch.float32)
            batch = (batch.clamp(-1.0, 1.0) + 1.0) / 2.0
            out[start:start + batch.shape[0]] = model(batch).double().cpu().numpy()
    return out
