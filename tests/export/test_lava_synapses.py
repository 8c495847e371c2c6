"""The explicit synapse matrices of the Loihi 2 export, against PyTorch's conv of the
(upsampled) spike map: no Lava needed."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sdm_neuro.ir.graph import Projection
from sdm_neuro.errors import ExportError
from sdm_neuro.export.lava_synapses import connection_matrix, weight_parts
from sdm_neuro.ir.fixed_point import WEIGHT_MAX, WEIGHT_MIN


@pytest.mark.parametrize("k, stride, up", [(3, 1, 1), (3, 2, 1), (1, 1, 1), (3, 1, 2), (1, 1, 2)])
def test_connection_matrix_is_the_conv(k, stride, up):
    g = torch.Generator().manual_seed(k * 10 + stride + up)
    cs, hs, cd = 3, 6, 4
    w = torch.randint(-128, 128, (cd, cs, k, k), generator=g).to(torch.int16) * 2
    proj = Projection("a", "b", w.double(), stride=stride, upsample=up, weight_int=w, weight_exp=0)
    spikes = torch.rand(5, cs, hs, hs, generator=g) < 0.4
    z = F.interpolate(spikes.double(), scale_factor=up, mode="nearest") if up > 1 else spikes.double()
    want = F.conv2d(z, w.double(), stride=stride, padding=k // 2)  # exact: small integers
    m = connection_matrix(proj, (cs, hs, hs), tuple(want.shape[1:]))
    got = m @ spikes.reshape(5, -1).numpy().T.astype(np.int64)
    assert np.array_equal(got.T, want.reshape(5, -1).numpy().astype(np.int64))
    assert m.dtype == np.int64 and (m.data != 0).all()


def test_weight_parts_fit_lava_synapses_and_sum_to_the_matrix():
    from scipy.sparse import csr_matrix

    m = csr_matrix(np.array([[500, -2, 0], [-600, 254, 256]], dtype=np.int64))
    parts = weight_parts(m)
    assert len(parts) == 3  # 500 = 254 + 246; -600 = -256 - 256 - 88
    assert all(WEIGHT_MIN <= p.data.min() and p.data.max() <= WEIGHT_MAX for p in parts)
    assert np.array_equal(sum(p.toarray() for p in parts), m.toarray())
    with pytest.raises(ExportError, match="odd"):
        weight_parts(csr_matrix(np.array([[3]], dtype=np.int64)))


@pytest.mark.parametrize("weight_exp", [-1, -2, -3, -5, -7, -8])
def test_split_parts_floor_like_the_whole_matrix_for_negative_exponents(weight_exp):
    """Lava floors each part's sum (``a >> -weight_exp``): the parts' floors must add up to the
    floor of the whole matrix's sum for every spike vector, as the simulator computes it."""
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(-weight_exp)
    dense = 2 * rng.integers(-400, 400, (40, 60))  # even, far outside [-256, 254]
    if weight_exp == -8:  # positive multiples of 256 cannot be split: negative sums only
        dense = -np.abs(dense)
    m = csr_matrix(dense.astype(np.int64))
    parts = weight_parts(m, weight_exp)
    assert len(parts) > 1
    assert all(WEIGHT_MIN <= p.data.min() and p.data.max() <= WEIGHT_MAX for p in parts)
    assert all((p.data % 2 == 0).all() for p in parts)
    k = -weight_exp
    for _ in range(50):
        s = (rng.random(60) < rng.random()).astype(np.int64)
        whole = [int(v) // 2**k for v in dense @ s]  # Python floor division: floor
        lava = np.sum([(p @ s) >> k for p in parts], axis=0)  # numpy >> on int64: floor
        assert lava.tolist() == whole
    # the naive split (clip to the range, repeat) does not have this property
    naive = [np.clip(dense, WEIGHT_MIN, WEIGHT_MAX)]
    naive.append(dense - naive[0])
    s = np.ones(60, dtype=np.int64)
    if k > 1:
        assert any(((naive[0] @ s) >> k) + ((naive[1] @ s) >> k) != (dense @ s) // 2**k)


def test_a_split_that_cannot_be_exact_is_refused():
    from scipy.sparse import csr_matrix

    with pytest.raises(ExportError, match="weight_exp -8"):
        weight_parts(csr_matrix(np.array([[600]], dtype=np.int64)), -8)
