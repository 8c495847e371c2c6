"""Deployment backends: ONNX now (``onnx.py``); NIR, Lava / Loihi 2 and the export-time
hardware checks arrive with the export issue. See README.md in this folder."""
