"""The explicit synapse matrices of the Loihi 2 export, against PyTorch's conv of the
(upsampled) spike map: no Lava needed."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sdm_neuro.deploy.graph import Projection
from sdm_neuro.errors import ExportError
from sdm_neuro.export.loihi2 import WEIGHT_MAX, WEIGHT_MIN, connection_matrix, weight_parts


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
