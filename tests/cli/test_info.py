"""``sdm-neuro info``: the reference paper configurations load and are described; a bad
checkpoint, or an option beyond its limit, is one line naming the file, with exit code 3 or 4."""

import os
from pathlib import Path

import pytest
import torch

from sdm_neuro import CheckpointError
from sdm_neuro.checkpoint import (
    FORMAT_TAG,
    FORMAT_VERSION,
    load_model,
    read_checkpoint,
)
from sdm_neuro.cli import main as cli
from sdm_neuro.errors import ConfigError
from sdm_neuro.models import count_parameters


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


# ------------------------------------------------------------------------------- bad input --

class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {Path.cwd() / 'PWNED'}",))


def bad_files(tmp: Path, cfg, tiny_sd) -> dict[str, tuple[Path, str]]:
    """Bad checkpoint files built from the tiny model ``cfg`` and its state_dicts ``tiny_sd``
    (tests/conftest.py's ``tiny_state_dict``), with the message each must give."""
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
    torch.save({"format": FORMAT_TAG, "format_version": FORMAT_VERSION + 1, "config": cfg.to_dict(),
                "net_model": tiny_sd()}, tmp / "future.pt")
    wrong = cfg.to_dict() | {"ch": 16}
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
def test_bad_checkpoints_fail_clearly(tmp_path, monkeypatch, capsys, tiny_config,
                                      tiny_state_dict, case):
    monkeypatch.chdir(tmp_path)
    path, message = bad_files(tmp_path, tiny_config, tiny_state_dict)[case]
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(path, snn_steps=2, img_size=8)
    code = cli(["info", str(path)])
    err = capsys.readouterr().err
    assert code == 4 and "Traceback" not in err and str(path) in err
    assert len(err.strip().splitlines()) == 1  # one paragraph
    assert not (tmp_path / "PWNED").exists()  # the pickle's payload never ran


def test_option_overrides_are_checked_and_named(tmp_path, capsys, tiny_checkpoint,
                                                tiny_state_dict):
    path = tiny_checkpoint
    with pytest.raises(ConfigError, match=rf"^{path}: --img-size 1000000: .*img_size 1,000,000 "
                                          r"exceeds the limit 1,024"):
        read_checkpoint(path, img_size=10**6)
    with pytest.raises(ConfigError, match=rf"^{path}: --snn-steps 2.5: .*snn_steps must be an "
                                          r"integer"):
        read_checkpoint(path, snn_steps=2.5)
    assert cli(["info", str(path), "--img-size", "2000000"]) == ConfigError.exit_code
    err = capsys.readouterr().err
    assert "--img-size 2000000" in err and str(path) in err and "limit 1,024" in err
    torch.save(tiny_state_dict(), tmp_path / "sd.pt")  # inferred config: the file is named
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'sd.pt'} \[state_dict\]: the "
                                          r"configuration inferred .* snn_steps 300 exceeds"):
        read_checkpoint(tmp_path / "sd.pt", snn_steps=300, img_size=8)
