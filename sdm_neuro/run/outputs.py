"""Output locations: every job checks where it will write before any work starts, so a bad
``out`` fails at once (from the CLI and from Python alike), not after a long run."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError

# What each job writes, by option: "bundle" is a directory written whole (atomic_dir: --force
# replaces a non-empty one), "dir" a directory written into, "file" one file.
OUTPUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "sample": (("out", "dir"),),
    "evaluate": (("out", "bundle"),),
    "simulate": (("out", "bundle"),),
    "energy-report": (("out", "bundle"),),
    "export": (("out", "bundle"),),
    "tradeoff": (("out", "bundle"),),
    "train": (("out", "file"), ("release", "file")),
    "train-classifier": (("out", "file"),),
}


def check_outputs(command: str, *, force: bool | None = None, **paths: Path | None) -> None:
    """Refuse every output location of job ``command`` (``paths``: option name -> path, None
    when not given) that the write at the end would refuse, or fail on, before any work."""
    for attr, kind in OUTPUTS[command]:
        path = paths.get(attr)
        if path is not None:
            check_output(Path(path), f"--{attr}", kind, force=force)


def check_output(path: Path, option: str, kind: str, *, force: bool | None) -> None:
    """One output location of ``kind`` ("bundle", "dir" or "file"); a :class:`UsageError`
    naming ``option`` and the path."""
    if path.is_symlink() and kind == "bundle":
        # the finished directory is renamed into place: that would replace the link itself
        raise UsageError(f"{option} {path}: is a symbolic link; the output directory is "
                         "replaced as a whole, so give the directory's own path.")
    if path.is_symlink() and not path.exists() and kind == "dir":
        raise UsageError(f"{option} {path}: is a broken symbolic link.")
    if path.exists():
        if kind == "file" and path.is_dir():
            raise UsageError(f"{option} {path}: is a directory; expected a file to write.")
        if kind != "file" and not path.is_dir():
            raise UsageError(f"{option} {path}: exists and is not a directory.")
        if kind == "bundle" and not force and _non_empty(path, option):
            raise UsageError(f"{option} {path}: output directory exists and is not empty; "
                             "pass --force to replace it.")
    # Where new entries are created: the folder itself ("dir"), else beside it (a temporary
    # file or directory renamed onto it); missing folders are created from the nearest one there.
    base = path if kind == "dir" else path.parent
    while not os.path.lexists(base) and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"{option} {path}: {base} is not a directory, so nothing can be "
                         "written there.")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {base} is not writable (permission denied or a "
                         "read-only file system).")


def _non_empty(path: Path, option: str) -> bool:
    try:
        return any(path.iterdir())
    except OSError as e:
        raise UsageError(f"{option} {path}: cannot be listed ({e.strerror or e}).") from None
