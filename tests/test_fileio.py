"""Atomic outputs: a writer that fails midway (after writing part of its output) leaves the old
file or directory byte-for-byte as it was, and no temporary file behind."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sdm_neuro import SpikingUNet
from sdm_neuro.checkpoint import save_checkpoint
from sdm_neuro.fileio import atomic_dir, write_atomic, write_json, write_npy


class Midway(Exception):
    """Raised by a writer after it wrote part of its output."""


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _old_file(tmp_path: Path, name: str = "out.bin") -> tuple[Path, bytes]:
    path = tmp_path / name
    old = b"the old content \x00\x01\x02" * 10
    path.write_bytes(old)
    return path, old


def _unchanged(path: Path, old: bytes) -> None:
    assert path.read_bytes() == old
    assert sorted(os.listdir(path.parent)) == [path.name], "a temporary file was left behind"


def _partial_then_fail(target) -> None:
    """Write half of something to ``target`` (a path or a file object), then fail."""
    data = b"partial new content " * 50
    if hasattr(target, "write"):
        target.write(data)
        target.flush()
    else:
        Path(target).write_bytes(data)
    raise Midway


def test_write_atomic_failing_midway(tmp_path):
    path, old = _old_file(tmp_path)
    with pytest.raises(Midway):
        write_atomic(path, _partial_then_fail)
    _unchanged(path, old)


def test_write_atomic_failing_at_the_rename(tmp_path, monkeypatch):
    path, old = _old_file(tmp_path)

    def replace(src, dst):
        raise Midway

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Midway):
        write_atomic(path, lambda tmp: tmp.write_bytes(b"complete new content"))
    monkeypatch.undo()
    _unchanged(path, old)


def test_write_json_failing_midway(tmp_path, monkeypatch):
    path, old = _old_file(tmp_path, "out.json")
    real = Path.write_text

    def write_text(self, text, *args, **kwargs):
        real(self, text[: len(text) // 2], *args, **kwargs)
        raise Midway

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(Midway):
        write_json(path, {"key": list(range(100))})
    monkeypatch.undo()
    _unchanged(path, old)


def test_write_npy_failing_midway(tmp_path, monkeypatch):
    path, old = _old_file(tmp_path, "out.npy")

    def save(f, array, *args, **kwargs):
        _partial_then_fail(f)

    monkeypatch.setattr(np, "save", save)
    with pytest.raises(Midway):
        write_npy(path, np.arange(1000.0))
    monkeypatch.undo()
    _unchanged(path, old)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_checkpoint_failing_midway(tmp_path, monkeypatch, micro_config, suffix):
    torch.manual_seed(0)
    sd = SpikingUNet(micro_config).state_dict()
    path = save_checkpoint(tmp_path / f"ckpt{suffix}", micro_config, sd)
    old = path.read_bytes()

    def save(obj, target, *args, **kwargs):
        _partial_then_fail(target)

    if suffix == ".pt":
        monkeypatch.setattr(torch, "save", save)
    else:
        import safetensors.torch

        monkeypatch.setattr(safetensors.torch, "save_file", save)
    with pytest.raises(Midway):
        save_checkpoint(path, micro_config, {k: v + 1 for k, v in sd.items()})
    monkeypatch.undo()
    _unchanged(path, old)


def _old_dir(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "a.json").write_text('{"old": true}\n')
    (out / "sub" / "b.bin").write_bytes(bytes(range(256)))
    return out, _snapshot(out)


def _dir_unchanged(out: Path, old: dict[str, bytes]) -> None:
    assert _snapshot(out) == old
    assert sorted(os.listdir(out.parent)) == [out.name], "a temporary directory was left behind"


def test_atomic_dir_failing_midway(tmp_path):
    out, old = _old_dir(tmp_path)
    with pytest.raises(Midway), atomic_dir(out, force=True) as tmp:
        (tmp / "a.json").write_text('{"new": true}\n')
        _partial_then_fail(tmp / "c.bin")
    _dir_unchanged(out, old)


def test_atomic_dir_failing_at_the_swap(tmp_path, monkeypatch):
    """The new directory cannot be moved into place: the old one must still be there (it is
    moved aside first, and back on failure; never deleted before the new one is in place)."""
    out, old = _old_dir(tmp_path)
    real = os.replace

    def replace(src, dst):
        if str(src).endswith(".tmp"):  # the finished temporary directory -> out
            raise Midway
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Midway), atomic_dir(out, force=True) as tmp:
        (tmp / "new.json").write_text("{}\n")
    monkeypatch.undo()
    _dir_unchanged(out, old)


def test_atomic_dir_success_replaces_the_old_directory_whole(tmp_path):
    out, _ = _old_dir(tmp_path)
    with atomic_dir(out, force=True) as tmp:
        (tmp / "new.json").write_text("{}\n")
    assert _snapshot(out) == {"new.json": b"{}\n"}
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_write_bundle_failing_midway_keeps_the_old_bundle(tmp_path, monkeypatch, randomized,
                                                          micro_config):
    """The export's composition (cli: atomic_dir + write_bundle): host.npz fails after
    network.nir was written."""
    from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
    from sdm_neuro.export import bundle
    from sdm_neuro.export.bundle import read_bundle, write_bundle

    torch.manual_seed(0)
    graph = build_integer_graph(randomized(SpikingUNet(micro_config)), calibration_inputs(
        torch.rand(4, 1, 4, 4) * 2 - 1, count=4, batch_size=4))
    out = tmp_path / "bundle"
    with atomic_dir(out) as tmp:
        write_bundle(graph, tmp, {"target": "nir"})
    old = _snapshot(out)
    assert set(old) == {"manifest.json", "network.nir", "host.npz"}

    def savez(file, **arrays):
        _partial_then_fail(file)

    monkeypatch.setattr(bundle.np, "savez", savez)
    with pytest.raises(Midway), atomic_dir(out, force=True) as tmp:
        write_bundle(graph, tmp, {"target": "nir", "second": True})
    monkeypatch.undo()
    _dir_unchanged(out, old)
    read_bundle(out)  # still a whole, valid bundle


def test_a_failed_first_write_leaves_nothing(tmp_path):
    path = tmp_path / "new.bin"
    with pytest.raises(Midway):
        write_atomic(path, _partial_then_fail)
    assert os.listdir(tmp_path) == []
    out = tmp_path / "d"
    with pytest.raises(Midway), atomic_dir(out) as tmp:
        _partial_then_fail(tmp / "x")
    assert os.listdir(tmp_path) == []
    shutil.rmtree(tmp_path, ignore_errors=True)
