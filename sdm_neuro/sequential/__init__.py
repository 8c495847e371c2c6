"""Feed-forward spiking networks exchanged through NIR with snnTorch and Norse: read / write
(:mod:`.nir_io`), float reference (:mod:`.network`), fixed-point quantization (:mod:`.quantize`);
the integer simulator is :mod:`sdm_neuro.simulators.sequential`, the netx writer
:mod:`sdm_neuro.export.netx`."""
