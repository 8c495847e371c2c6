"""Checkpoints: native round trips, reference import with config inference. (The reference
paper configurations and bad checkpoints through ``sdm-neuro info``: tests/cli/test_info.py.)"""

import pytest
import torch

from sdm_neuro import (
    CheckpointError,
    CheckpointMismatchError,
    UNetConfig,
    UsageError,
)
from sdm_neuro.checkpoint import (
    infer_config,
    read_checkpoint,
    save_checkpoint,
)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_native_round_trip_with_ema_selection(tmp_path, tiny_config, tiny_state_dict, suffix):
    net, ema = tiny_state_dict(seed=0), tiny_state_dict(seed=1)
    path = save_checkpoint(tmp_path / f"m{suffix}", tiny_config, net, ema_model=ema,
                           meta={"step": 7})
    ck = read_checkpoint(path)
    assert ck.kind == "native" and ck.config == tiny_config and ck.meta == {"step": 7}
    assert ck.weights == "ema_model" and all(torch.equal(ck.state_dict[k], ema[k]) for k in ema)
    ck = read_checkpoint(path, weights="net")
    assert ck.weights == "net_model" and all(torch.equal(ck.state_dict[k], net[k]) for k in net)
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


def test_native_overrides_and_their_limits(tmp_path, tiny_checkpoint, tiny_config,
                                           tiny_state_dict):
    path = tiny_checkpoint
    assert read_checkpoint(path, snn_steps=5, img_size=16).config == tiny_config.replace(
        snn_steps=5, img_size=16)
    with pytest.raises(UsageError, match="no 'ema_model'"):
        read_checkpoint(path, weights="ema")
    tsm = tiny_config.replace(tsm=True)
    tpath = save_checkpoint(tmp_path / "t.pt", tsm, tiny_state_dict(tsm))
    with pytest.raises(UsageError, match="T_snn = 2"):
        read_checkpoint(tpath, snn_steps=4)


INFER = [
    # the tiny model (tests/conftest.py's tiny_config)
    UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=2, img_size=8),
    UNetConfig(ch=16, ch_mult=(1, 2, 2, 4), num_res_blocks=2, img_ch=3, snn_steps=4, img_size=32),
    UNetConfig(ch=8, ch_mult=(3,), num_res_blocks=0, img_ch=2, diffusion_steps=50, img_size=32),
    UNetConfig(ch=8, ch_mult=(2, 1, 3), num_res_blocks=3, img_ch=1, snn_steps=6, tsm=True, img_size=32),
]


@pytest.mark.parametrize("cfg", INFER, ids=range(len(INFER)))
def test_config_inferred_from_reference_layout(tiny_state_dict, cfg):
    inferred, notes = infer_config(tiny_state_dict(cfg), source="x", img_size=32,
                                   snn_steps=None if cfg.tsm else cfg.snn_steps)
    assert inferred == cfg.replace(img_size=32)
    assert any("T_snn" in n for n in notes)


def test_bare_state_dict_is_accepted(tmp_path, tiny_config, tiny_state_dict):
    torch.save(tiny_state_dict(), tmp_path / "sd.pt")
    ck = read_checkpoint(tmp_path / "sd.pt", snn_steps=2, img_size=8)
    assert ck.kind == "state_dict" and ck.config == tiny_config


def test_mismatch_is_a_checkpoint_error_subclass():
    assert issubclass(CheckpointMismatchError, CheckpointError)
