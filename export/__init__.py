"""Deployment backends (NIR, Lava / Loihi 2, ONNX) and export-time hardware checks.

See README.md in this folder; the backends arrive with the export issue."""
