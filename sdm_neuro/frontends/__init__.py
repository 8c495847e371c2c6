"""Frontends: networks read from interchange files into the IR (feed-forward SNNs from NIR,
:mod:`.feedforward_nir`). Checkpoints are read by :mod:`sdm_neuro.checkpoint`."""
