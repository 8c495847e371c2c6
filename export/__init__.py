"""Deployment backends: the export bundles and their NIR files (``bundle.py``,
``feedforward_bundle.py``), Lava / Loihi 2 (``lava_runtime.py``, run in a child process by
``lava_process.py`` and ``lava_worker.py``), lava-dl netx for feed-forward SNNs (``netx.py``),
ONNX (``onnx.py``). See README.md in this folder."""
