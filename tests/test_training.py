"""Training: exact resume, EMA, TSM initialisation, the recipe's checks. (The train command, its
recipe handling: tests/cli/test_train.py.) The tiny model and recipe, and ``train_tiny``, are
tests/conftest.py's."""

import json

import pytest
import torch

from sdm_neuro import SpikingUNet
from sdm_neuro.checkpoint import read_checkpoint, read_train_state
from sdm_neuro.errors import CheckpointError, ConfigError, UsageError
from sdm_neuro.training import (
    TrainConfig,
    batch_indices,
    ema_update,
    to_tsm_state_dict,
    train,
)


def test_batches_cover_each_epoch_once_and_depend_only_on_step():
    n, b = 10, 4
    seq = torch.cat([batch_indices(k, b, n, seed=3) for k in range(5)])  # 2 epochs exactly
    assert sorted(seq[:10].tolist()) == list(range(10)) == sorted(seq[10:20].tolist())
    assert torch.equal(batch_indices(3, b, n, seed=3), batch_indices(3, b, n, seed=3))
    assert not torch.equal(seq[:10], seq[10:20])  # a fresh permutation per epoch
    assert not torch.equal(batch_indices(0, b, n, seed=3), batch_indices(0, b, n, seed=4))


def test_resume_continues_bit_for_bit(tmp_path, train_tiny, tiny_config):
    straight = train_tiny(tmp_path, "a.pt", 4)
    train_tiny(tmp_path, "b.pt", 2)
    resumed = train_tiny(tmp_path, "b.pt", 4, resume=tmp_path / "b.pt")
    assert straight.step == resumed.step == 4
    for weights in ("net", "ema"):
        a = read_checkpoint(tmp_path / "a.pt", weights=weights).state_dict
        b = read_checkpoint(tmp_path / "b.pt", weights=weights).state_dict
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (weights, k)
    sa, sb = read_train_state(tmp_path / "a.pt"), read_train_state(tmp_path / "b.pt")
    assert torch.equal(sa["rng"], sb["rng"]) and sa["losses"] == sb["losses"]
    # ...and the run did learn something: the weights moved away from the initialisation.
    init = SpikingUNet(tiny_config).state_dict()
    assert any(not torch.equal(init[k], v) for k, v in
               read_checkpoint(tmp_path / "a.pt", weights="net").state_dict.items()
               if v.is_floating_point())


def test_outputs_and_release(tmp_path, tiny_config, tiny_recipe):
    res = train(tiny_config, tiny_recipe.__class__(**{**tiny_recipe.to_dict(), "steps": 2}),
                out=tmp_path / "r.pt", release=tmp_path / "release.pt", device="cpu",
                progress=False, log=lambda _: None)
    rel = torch.load(tmp_path / "release.pt", weights_only=True)
    assert set(rel) == {"format", "format_version", "config", "net_model", "meta"}
    ema = read_checkpoint(tmp_path / "r.pt", weights="ema").state_dict
    assert all(torch.equal(rel["net_model"][k], ema[k]) for k in ema)
    log = json.loads(res.log_json.read_text())
    assert log["step"] == 2 and res.loss_png.stat().st_size > 1000
    ck = read_checkpoint(tmp_path / "r.pt")
    assert ck.meta["dataset"] == "digits" and ck.meta["train_config"]["lr"] == 1e-3


def test_ema_update_matches_the_reference_formula(tiny_config):
    torch.manual_seed(0)
    a, b = SpikingUNet(tiny_config), SpikingUNet(tiny_config)
    for p in b.parameters():
        p.data.normal_()
    before = {k: v.clone() for k, v in a.state_dict().items()}
    ema_update(a, b, 0.9)
    src = b.state_dict()
    for k, v in a.state_dict().items():
        want = before[k] * 0.9 + src[k] * (1 - 0.9) if v.is_floating_point() else src[k]
        torch.testing.assert_close(v, want, rtol=0, atol=1e-6)


def test_tsm_initialised_from_a_non_tsm_model_is_the_same_function(tiny_config):
    torch.manual_seed(0)
    plain = SpikingUNet(tiny_config).eval()
    tsm_cfg = tiny_config.replace(tsm=True)
    tsm = SpikingUNet(tsm_cfg).eval()
    tsm.load_state_dict(to_tsm_state_dict(plain.state_dict(), tsm_cfg))
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 500, 999])
    with torch.no_grad():
        torch.testing.assert_close(tsm(x, t), plain(x, t), rtol=0, atol=1e-5)


@pytest.mark.parametrize("field, value", [
    ("steps", 2.0), ("steps", True), ("batch_size", 8.5), ("lr", "1e-3"), ("warmup", 1.5),
    ("grad_clip", float("inf")), ("ema_decay", float("nan")), ("seed", 2**64), ("hflip", 1),
    ("dataset", None),
])
def test_train_config_refuses_wrong_types_and_values(field, value):
    with pytest.raises(UsageError, match=rf"invalid --[a-z-]+ \({field}\) = "):
        TrainConfig(**{field: value})


def test_train_config_from_a_checkpoint_names_the_file_and_key(tiny_recipe):
    with pytest.raises(CheckpointError, match=r"x\.pt: 'meta\.train_config': 'lr' is '2e-4'"):
        TrainConfig.from_dict({**tiny_recipe.to_dict(), "lr": "2e-4"}, source="x.pt")
    with pytest.raises(CheckpointError, match=r"x\.pt: 'meta\.train_config': unknown key\(s\) "
                                              r"\['momentum'\]"):
        TrainConfig.from_dict({**tiny_recipe.to_dict(), "momentum": 0.9}, source="x.pt")
    with pytest.raises(CheckpointError, match=r"x\.pt: 'meta\.train_config' is a list"):
        TrainConfig.from_dict([], source="x.pt")
    assert TrainConfig.from_dict(tiny_recipe.to_dict(), source="x.pt") == tiny_recipe


# ------------------------------------------------------------ malformed resume checkpoints --

@pytest.fixture(scope="module")
def one_step(tmp_path_factory, train_tiny):
    """A training checkpoint after one step (shared: the tests only read it)."""
    tmp = tmp_path_factory.mktemp("one_step")
    train_tiny(tmp, "c.pt", 1)
    return tmp / "c.pt"


def _tamper(state, what):
    """Break one part of a training checkpoint; returns the first parameter index with state
    (the frozen time-embedding table has none)."""
    opt = state["train_state"]["optimizer"]
    i = min(opt["state"])
    if what == "moment-shape":
        opt["state"][i]["exp_avg"] = torch.zeros(3)
    elif what == "moment-dtype":
        opt["state"][i]["exp_avg_sq"] = opt["state"][i]["exp_avg_sq"].to(torch.int32)
    elif what == "hyper-parameter":
        opt["param_groups"][0]["betas"] = "fast"
    elif what == "params":
        opt["param_groups"][0]["params"] = opt["param_groups"][0]["params"][:-1]
    elif what == "rng":
        state["train_state"]["rng"] = state["train_state"]["rng"][:100]
    return i


@pytest.mark.parametrize("what, message", [
    ("moment-shape", "'state.{i}.exp_avg' is torch.float32 [3], expected a float tensor"),
    ("moment-dtype", "'state.{i}.exp_avg_sq' is torch.int32"),
    ("hyper-parameter", "hyper-parameter(s) ['betas'] are ['fast']"),
    ("params", "lists parameters"),
    ("rng", "'train_state.rng' is not a state of a cpu generator"),
])
def test_resume_refuses_a_malformed_training_state(tmp_path, one_step, train_tiny, what, message):
    state = torch.load(one_step, weights_only=True)
    i = _tamper(state, what)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as info:
        train_tiny(tmp_path, "out.pt", 2, resume=tmp_path / "bad.pt")
    msg = str(info.value)
    assert str(tmp_path / "bad.pt") in msg and message.format(i=i) in msg, msg
    assert not (tmp_path / "out.pt").exists()


def test_resume_refuses_another_model(tmp_path, one_step, tiny_config, tiny_recipe):
    other = tiny_config.replace(snn_steps=3)
    with pytest.raises(ConfigError, match=r"--resume .*c\.pt: the checkpoint's model .* is not "
                                          r"the model to train .*'snn_steps': 3"):
        train(other, tiny_recipe, out=tmp_path / "o.pt", device="cpu", resume=one_step,
              progress=False, save_every=0, log=lambda _: None)
