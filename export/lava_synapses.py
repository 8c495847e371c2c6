"""The explicit synapse matrices of a projection on Lava's ``Sparse`` processes.

A projection's conv, its stride and a nearest upsample are unrolled into one weight per (source,
target) pair (:func:`connection_matrix`). Folded upsample taps can leave the 8-bit range; such a
matrix is split into parts that each fit, and Lava sums the parts at the neuron's input. Each
part shifts its own sum by ``weight_exp``: exact for a left shift, and for a right shift (a
floor) because all parts but one hold multiples of ``2**-weight_exp`` (:func:`weight_parts`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ExportError
from ..ir.fixed_point import WEIGHT_MAX, WEIGHT_MIN
from ..ir.graph import Projection


def connection_matrix(proj: Projection, src_shape: tuple[int, int, int],
                      dst_shape: tuple[int, int, int], step: int = 0
                      ) -> scipy.sparse.csr_matrix:  # noqa: F821
    """The synapses of ``proj`` (at SNN step ``step`` for TSM) as an int64 ``[N_dst, N_src]``
    CSR matrix over C-order flattened (C, H, W) populations: each conv tap placed explicitly,
    the upsampled positions mapped back to their source neuron, taps that meet the same
    (source, target) pair summed."""
    from scipy.sparse import coo_matrix

    w = proj.weight_int.to(torch.int64)
    w = (w[step] if w.dim() == 5 else w).numpy()
    c_out, c_in, k, _ = w.shape
    cs, hs, ws = src_shape
    cd, hd, wd = dst_shape
    if c_in != cs or c_out != cd:
        raise ExportError(f"projection {proj.src} -> {proj.dst}: weight {tuple(w.shape)} does not "
                          f"fit source {src_shape} / target {dst_shape}.")
    u, s, pad = proj.upsample, proj.stride, proj.padding

    def axis(n_out: int, n_src: int):  # (output index, tap, source index) along one axis
        o, kk = np.meshgrid(np.arange(n_out), np.arange(k), indexing="ij")
        pos = o * s + kk - pad  # position on the (upsampled) input map
        ok = (pos >= 0) & (pos < n_src * u)
        return o[ok], kk[ok], pos[ok] // u

    yo, ky, ys = axis(hd, hs)
    xo, kx, xs = axis(wd, ws)
    co, ci = np.meshgrid(np.arange(c_out), np.arange(c_in), indexing="ij")
    co, ci = co.ravel(), ci.ravel()
    vals = w[co[:, None, None], ci[:, None, None], ky[None, :, None], kx[None, None, :]]
    rows = (co[:, None, None] * hd + yo[None, :, None]) * wd + xo[None, None, :]
    cols = (ci[:, None, None] * hs + ys[None, :, None]) * ws + xs[None, None, :]
    keep = vals != 0
    m = coo_matrix((vals[keep], (rows[keep], cols[keep])), shape=(cd * hd * wd, cs * hs * ws))
    m = m.tocsr()  # sums the folded taps
    m.eliminate_zeros()
    return m


def weight_parts(m, weight_exp: int = 0, where: str = "a projection") -> list:
    """Split an integer matrix into matrices whose entries fit one Lava synapse (even values in
    [-256, 254]) and whose Lava outputs sum to the whole matrix's, ``(m @ s) << weight_exp``:
    usually one part; folded upsample taps may need more.

    Each part is its own connection process and shifts its own sum. A left shift distributes
    over the sum, so any split is exact for ``weight_exp >= 0``. A negative exponent floors each
    part's sum, and floors do not add up; they do when all parts but one have entries that are
    multiples of ``2**-weight_exp`` (their sums then shift exactly): those take the multiples,
    one more part the remainders ``m mod 2**-weight_exp``, which are even and fit."""
    if m.nnz and (m.data % 2).any():
        raise ExportError(f"{where}: a synaptic weight is odd; Lava's mixed-sign weights are "
                          "even.")
    if not m.nnz or (m.data.min() >= WEIGHT_MIN and m.data.max() <= WEIGHT_MAX):
        return [m.copy()] if m.nnz else []
    parts, rest, hi = [], m.copy(), WEIGHT_MAX
    if weight_exp < 0:
        unit = 2 ** -weight_exp
        hi = -WEIGHT_MIN - unit  # the largest multiple of unit below 256
        rem = m.copy()
        rem.data = np.mod(rem.data, unit)
        rem.eliminate_zeros()
        rest = m - rem
        rest.eliminate_zeros()
        if unit > -WEIGHT_MIN or (hi <= 0 and rest.nnz and rest.data.max() > 0):
            raise ExportError(f"{where}: weight_exp {weight_exp}: the matrix needs more than one Lava "
                              f"synapse per weight, and its parts would have to be multiples of "
                              f"{unit} in [{WEIGHT_MIN}, {WEIGHT_MAX}], which they cannot be "
                              f"exactly.")
        parts = [rem] if rem.nnz else []
    while rest.nnz:  # every step takes the largest part that fits (multiples of unit if < 0)
        part = rest.copy()
        part.data = np.clip(part.data, WEIGHT_MIN, hi)
        parts.append(part)
        rest = rest - part
        rest.eliminate_zeros()
    return parts
