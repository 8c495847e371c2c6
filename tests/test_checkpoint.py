"""Checkpoints: native round trips, reference import with config inference, bad input."""

import os
from pathlib import Path

import pytest
import torch

from sdm_neuro import (
    CheckpointError,
    CheckpointMismatchError,
    SpikingUNet,
    UNetConfig,
    UsageError,
)
from sdm_neuro.checkpoint import (
    FORMAT_TAG,
    FORMAT_VERSION,
    infer_config,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from sdm_neuro.cli import main as cli
from sdm_neuro.models import count_parameters

TINY = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=2, img_size=8)


def tiny_sd(cfg=TINY, seed=0):
    torch.manual_seed(seed)
    return SpikingUNet(cfg).state_dict()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_native_round_trip_with_ema_selection(tmp_path, suffix):
    net, ema = tiny_sd(seed=0), tiny_sd(seed=1)
    path = save_checkpoint(tmp_path / f"m{suffix}", TINY, net, ema_model=ema, meta={"step": 7})
    ck = read_checkpoint(path)
    assert ck.kind == "native" and ck.config == TINY and ck.meta == {"step": 7}
    assert ck.weights == "ema_model" and all(torch.equal(ck.state_dict[k], ema[k]) for k in ema)
    ck = read_checkpoint(path, weights="net")
    assert ck.weights == "net_model" and all(torch.equal(ck.state_dict[k], net[k]) for k in net)
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_native_overrides_and_their_limits(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", TINY, tiny_sd())
    assert read_checkpoint(path, snn_steps=5, img_size=16).config == TINY.replace(snn_steps=5, img_size=16)
    with pytest.raises(UsageError, match="no 'ema_model'"):
        read_checkpoint(path, weights="ema")
    tsm = TINY.replace(tsm=True)
    tpath = save_checkpoint(tmp_path / "t.pt", tsm, tiny_sd(tsm))
    with pytest.raises(UsageError, match="T_snn = 2"):
        read_checkpoint(tpath, snn_steps=4)


INFER = [
    TINY,
    UNetConfig(ch=16, ch_mult=(1, 2, 2, 4), num_res_blocks=2, img_ch=3, snn_steps=4, img_size=32),
    UNetConfig(ch=8, ch_mult=(3,), num_res_blocks=0, img_ch=2, diffusion_steps=50, img_size=32),
    UNetConfig(ch=8, ch_mult=(2, 1, 3), num_res_blocks=3, img_ch=1, snn_steps=6, tsm=True, img_size=32),
]


@pytest.mark.parametrize("cfg", INFER, ids=range(len(INFER)))
def test_config_inferred_from_reference_layout(cfg):
    inferred, notes = infer_config(tiny_sd(cfg), source="x", img_size=32,
                                   snn_steps=None if cfg.tsm else cfg.snn_steps)
    assert inferred == cfg.replace(img_size=32)
    assert any("T_snn" in n for n in notes)


def test_reference_paper_config_loads(reference_checkpoint, capsys):
    path = reference_checkpoint("sddpm_cifar10_keys.txt")
    model, ck = load_model(path)
    assert ck.kind == "reference" and len(ck.state_dict) == 455
    assert ck.config.to_dict() == {"ch": 128, "ch_mult": [1, 2, 2, 4], "num_res_blocks": 2,
                                   "img_ch": 3, "diffusion_steps": 1000, "snn_steps": 4,
                                   "tsm": False, "img_size": 32}
    assert count_parameters(model) == 66_696_413
    assert len(list(model.neurons())) == 51
    assert list(model.state_dict()) == list(ck.state_dict)  # same key order as the reference
    assert cli(["info", str(path), "--snn-steps", "8"]) == 0
    out = capsys.readouterr()
    assert "66,696,413" in out.out and "T_snn = 8" in out.err


def test_reference_tsm_config_loads(reference_checkpoint, capsys):
    path = reference_checkpoint("sdm_tsm_keys.txt", ema=True)
    ck = read_checkpoint(path)
    assert ck.config.tsm and ck.config.snn_steps == 8 and len(ck.state_dict) == 522
    assert ck.weights == "ema_model"
    assert cli(["info", str(path), "--weights", "net", "--json"]) == 0
    assert '"parameters": 66696949' in capsys.readouterr().out


def test_bare_state_dict_is_accepted(tmp_path):
    torch.save(tiny_sd(), tmp_path / "sd.pt")
    ck = read_checkpoint(tmp_path / "sd.pt", snn_steps=2, img_size=8)
    assert ck.kind == "state_dict" and ck.config == TINY


# ------------------------------------------------------------------------------- bad input --

class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {Path.cwd() / 'PWNED'}",))


def bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = tmp / "good.pt"
    torch.save({"net_model": tiny_sd()}, good)
    blob = good.read_bytes()
    (tmp / "trunc.pt").write_bytes(blob[: len(blob) // 2])
    (tmp / "text.pt").write_text("not a checkpoint\n")
    (tmp / "empty.pt").write_bytes(b"")
    torch.save({"net_model": Evil()}, tmp / "evil.pt")
    torch.save([1, 2, 3], tmp / "list.pt")
    torch.save({"foo": {"bar": 1}}, tmp / "noweights.pt")
    sd = tiny_sd()
    sd.pop("downblocks.0.conv1.weight")
    sd["extra.weight"] = torch.zeros(1)
    sd["bn.weight"] = torch.zeros(3)
    torch.save({"net_model": sd}, tmp / "keys.pt")
    torch.save({"format": FORMAT_TAG, "format_version": FORMAT_VERSION + 1, "config": TINY.to_dict(),
                "net_model": tiny_sd()}, tmp / "future.pt")
    wrong = TINY.to_dict() | {"ch": 16}
    torch.save({"format": FORMAT_TAG, "format_version": 1, "config": wrong, "net_model": tiny_sd()},
               tmp / "inconsistent.pt")
    sd = tiny_sd()
    sd["downblocks.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    sd["bn.running_var"][1] = -0.5
    torch.save({"net_model": sd}, tmp / "values.pt")
    return {
        "values": (tmp / "values.pt", (r"non-finite weights or negative BatchNorm running_var in "
                                       r"2 tensor\(s\): downblocks.0.conv1.weight, "
                                       r"bn.running_var \(min -0.5\)")),
        "missing": (tmp / "nope.pt", "no such file"),
        "directory": (tmp, "is a directory"),
        "truncated": (tmp / "trunc.pt", "truncated or corrupted"),
        "text": (tmp / "text.pt", "not a PyTorch checkpoint"),
        "empty": (tmp / "empty.pt", "truncated or empty"),
        "pickle-code": (tmp / "evil.pt", "would execute code"),
        "not-a-dict": (tmp / "list.pt", "holds a list"),
        "no-weights": (tmp / "noweights.pt", "no model weights found"),
        "keys": (tmp / "keys.pt", (r"Missing keys \(1\): downblocks.0.conv1.weight.*Unexpected "
                                   r"keys \(1\): extra.weight.*bn.weight: expected \[8\], "
                                   r"got \[3\]")),
        "future-version": (tmp / "future.pt", "format_version 2 is not supported"),
        "inconsistent": (tmp / "inconsistent.pt", "disagrees with the weights"),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "truncated", "text", "empty", "pickle-code",
                                  "not-a-dict", "no-weights", "keys", "future-version", "inconsistent",
                                  "values"])
def test_bad_checkpoints_fail_clearly(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    path, message = bad_files(tmp_path)[case]
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path, snn_steps=2, img_size=8)
    code = cli(["info", str(path)])
    err = capsys.readouterr().err
    assert code == 4 and "Traceback" not in err and str(path) in err
    assert len(err.strip().splitlines()) == 1  # one paragraph
    assert not (tmp_path / "PWNED").exists()  # the pickle's payload never ran


def test_mismatch_is_a_checkpoint_error_subclass():
    assert issubclass(CheckpointMismatchError, CheckpointError)
