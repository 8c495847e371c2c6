"""Make the archived Lava releases (lava-nc 0.10.0, lava-dl 0.6.0) import on Python 3.11, without
editing installed files.

Two known breakages (see README "Installation notes"), and one exactness fix:

1. ``lava/magma/compiler/var_model.py`` gives eight dataclass fields an instance default
   (``x: ByteEncoder = ByteEncoder()``), which Python 3.11 rejects at import. A meta-path hook
   loads that one module from its source with those defaults rewritten to
   ``field(default_factory=ByteEncoder)`` (same values, a fresh encoder per instance).
2. ``import lava.lib.dl.slayer`` imports its object-detection subpackage, which needs OpenCV and
   torchvision; an empty module is registered under that name first.
3. Lava's ``Conv`` model types its geometry (``kernel_size``, ``stride``, ``padding``,
   ``dilation``, ``groups``) as int8; under numpy 2 (NEP 50) a Python int >= 128 meeting them
   raises ``OverflowError``: at build for ``groups`` >= 128, inside ``run_spk`` for >= 128 input
   or output channels or a padded size >= 128, where it surfaces as a deadlocked run. After the
   import, :func:`import_lava` re-types them as int32 on ``AbstractPyConvModel`` (the shared
   base of the float and fixed-point models; the values are unchanged, so results are too).
   Verified exact in ``../shared/reference/lava_checks/conv_wide_patched.py`` /
   ``conv_groups_patched.py``; the graded backend (:mod:`.lava_graded`) needs it for the
   U-Net's 128-channel layers. Lava's Python processes are forked, so they inherit the patch.

Call :func:`import_lava` (idempotent) before importing anything from Lava.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import types

from sdm_neuro.errors import ExportError

LAVA_PIN = "lava-nc==0.10.0 lava-dl==0.6.0"
_VAR_MODEL = "lava.magma.compiler.var_model"
_DEFAULT = re.compile(r"^(\s+\w+\s*:\s*ByteEncoder\s*=\s*)ByteEncoder\(\)\s*$", re.MULTILINE)


class _PatchedVarModel(importlib.abc.Loader):
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def create_module(self, spec):  # the default module object
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        with open(self.origin, encoding="utf-8") as f:
            source = f.read()
        patched, n = _DEFAULT.subn(r"\1field(default_factory=ByteEncoder)", source)
        if n:  # `field` next to the module's own dataclass import
            patched = patched.replace("from dataclasses import dataclass,",
                                      "from dataclasses import field, dataclass,", 1)
        # exec is how a module loader runs a module: this is the installed Lava file itself.
        exec(compile(patched, self.origin, "exec", dont_inherit=True), module.__dict__)  # noqa: S102


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _VAR_MODEL:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.origin is None:
            return None
        return importlib.util.spec_from_file_location(name, spec.origin,
                                                      loader=_PatchedVarModel(spec.origin))


def install_hooks() -> None:
    """Register both measures (idempotent); nothing is imported from Lava."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    sys.modules.setdefault("lava.lib.dl.slayer.object_detection",
                           types.ModuleType("lava.lib.dl.slayer.object_detection"))


def import_lava() -> types.ModuleType:
    """Install the hooks and import ``lava``; a clear error names the extra when it is absent."""
    install_hooks()
    try:
        import lava.magma.core.run_configs
        import lava.magma.compiler.var_model  # noqa: F401 - the module the hook rewrites
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "lava":
            raise ExportError(f"Lava is not installed: it is an optional extra. Install it with "
                              f"`pip install --no-deps --ignore-requires-python {LAVA_PIN}` "
                              "(see the README's installation notes).") from None
        raise
    _patch_conv_geometry()
    import lava

    return lava


def _patch_conv_geometry() -> None:
    """Measure 3 (idempotent: setting the same attribute again changes nothing)."""
    import numpy as np
    from lava.magma.core.model.py.type import LavaPyType
    from lava.proc.conv.models import AbstractPyConvModel

    for name in ("kernel_size", "stride", "padding", "dilation", "groups"):
        if getattr(AbstractPyConvModel, name).d_type is not np.int32:
            setattr(AbstractPyConvModel, name, LavaPyType(np.ndarray, np.int32, precision=16))


def lava_unavailable() -> str | None:
    """Why Lava cannot be used here, for tests to skip outside CI: only that it is not installed.
    Any other failure to import it (a bug in the hooks above, a broken install) raises, so it
    fails the test run instead of turning into a skip."""
    if importlib.util.find_spec("lava") is None:
        return ("Lava is not installed (lava-nc / lava-dl); install it as the README's set-up "
                "does (.ci/install)")
    import_lava()
    return None
