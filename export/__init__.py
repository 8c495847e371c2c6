"""Deployment backends: the export bundle and its NIR file (``bundle.py``), Lava / Loihi 2
(``loihi2.py``), lava-dl netx for feed-forward SNNs (``netx.py``), ONNX (``onnx.py``). See
README.md in this folder."""
