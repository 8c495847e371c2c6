"""Training: exact resume, EMA, TSM initialisation, the CLI's recipe handling."""

import json

import pytest
import torch

from sdm_neuro import SpikingUNet, UNetConfig
from sdm_neuro.checkpoint import read_checkpoint, read_train_state, save_checkpoint
from sdm_neuro.cli import main as cli
from sdm_neuro.errors import CheckpointError, ConfigError, UsageError
from sdm_neuro.training import (
    TrainConfig,
    batch_indices,
    ema_update,
    to_tsm_state_dict,
    train,
)

TINY = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, img_ch=1, snn_steps=2, img_size=8)
RECIPE = TrainConfig(dataset="digits", steps=4, batch_size=8, lr=1e-3, warmup=2, ema_decay=0.9)


def _run(tmp_path, name, steps, resume=None):
    return train(TINY, RECIPE.__class__(**{**RECIPE.to_dict(), "steps": steps}),
                 out=tmp_path / name, device="cpu", resume=resume, progress=False,
                 save_every=0, log=lambda _: None)


def test_batches_cover_each_epoch_once_and_depend_only_on_step():
    n, b = 10, 4
    seq = torch.cat([batch_indices(k, b, n, seed=3) for k in range(5)])  # 2 epochs exactly
    assert sorted(seq[:10].tolist()) == list(range(10)) == sorted(seq[10:20].tolist())
    assert torch.equal(batch_indices(3, b, n, seed=3), batch_indices(3, b, n, seed=3))
    assert not torch.equal(seq[:10], seq[10:20])  # a fresh permutation per epoch
    assert not torch.equal(batch_indices(0, b, n, seed=3), batch_indices(0, b, n, seed=4))


def test_resume_continues_bit_for_bit(tmp_path):
    straight = _run(tmp_path, "a.pt", 4)
    _run(tmp_path, "b.pt", 2)
    resumed = _run(tmp_path, "b.pt", 4, resume=tmp_path / "b.pt")
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
    init = SpikingUNet(TINY).state_dict()
    assert any(not torch.equal(init[k], v) for k, v in
               read_checkpoint(tmp_path / "a.pt", weights="net").state_dict.items()
               if v.is_floating_point())


def test_outputs_and_release(tmp_path):
    res = train(TINY, RECIPE.__class__(**{**RECIPE.to_dict(), "steps": 2}), out=tmp_path / "r.pt",
                release=tmp_path / "release.pt", device="cpu", progress=False,
                log=lambda _: None)
    rel = torch.load(tmp_path / "release.pt", weights_only=True)
    assert set(rel) == {"format", "format_version", "config", "net_model", "meta"}
    ema = read_checkpoint(tmp_path / "r.pt", weights="ema").state_dict
    assert all(torch.equal(rel["net_model"][k], ema[k]) for k in ema)
    log = json.loads(res.log_json.read_text())
    assert log["step"] == 2 and res.loss_png.stat().st_size > 1000
    ck = read_checkpoint(tmp_path / "r.pt")
    assert ck.meta["dataset"] == "digits" and ck.meta["train_config"]["lr"] == 1e-3


def test_ema_update_matches_the_reference_formula():
    torch.manual_seed(0)
    a, b = SpikingUNet(TINY), SpikingUNet(TINY)
    for p in b.parameters():
        p.data.normal_()
    before = {k: v.clone() for k, v in a.state_dict().items()}
    ema_update(a, b, 0.9)
    src = b.state_dict()
    for k, v in a.state_dict().items():
        want = before[k] * 0.9 + src[k] * (1 - 0.9) if v.is_floating_point() else src[k]
        torch.testing.assert_close(v, want, rtol=0, atol=1e-6)


def test_tsm_initialised_from_a_non_tsm_model_is_the_same_function():
    torch.manual_seed(0)
    plain = SpikingUNet(TINY).eval()
    tsm_cfg = TINY.replace(tsm=True)
    tsm = SpikingUNet(tsm_cfg).eval()
    tsm.load_state_dict(to_tsm_state_dict(plain.state_dict(), tsm_cfg))
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 500, 999])
    with torch.no_grad():
        torch.testing.assert_close(tsm(x, t), plain(x, t), rtol=0, atol=1e-5)


def test_cli_trains_tsm_from_a_non_tsm_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    base = save_checkpoint(tmp_path / "base.pt", TINY, SpikingUNet(TINY).state_dict())
    out = tmp_path / "tsm.pt"
    assert cli(["train", "--init", str(base), "--tsm", "--ch", "8", "--ch-mult", "1,2",
                "--snn-steps", "2", "--img-size", "8", "--steps", "2", "--batch", "4",
                "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    ck = read_checkpoint(out)
    assert ck.config.tsm and any(k.endswith(".tsmp") for k in ck.state_dict)


def test_init_takes_the_architecture_of_its_checkpoint(tmp_path, capsys):
    base = save_checkpoint(tmp_path / "base.pt", TINY, SpikingUNet(TINY).state_dict(),
                           meta={"dataset": "digits"})
    out = tmp_path / "next.pt"
    assert cli(["train", "--init", str(base), "--steps", "1", "--batch", "4", "--device", "cpu",
                "--out", str(out), "--quiet"]) == 0
    assert read_checkpoint(out).config == TINY
    # Flags that change the architecture cannot load those weights: say which and why.
    code = cli(["train", "--init", str(base), "--ch", "16", "--steps", "1", "--batch", "4",
                "--device", "cpu", "--out", str(tmp_path / "bad.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert code == ConfigError.exit_code and "ch 8 vs 16" in err and str(base) in err
    assert not (tmp_path / "bad.pt").exists()


def test_resume_refuses_a_changed_recipe(tmp_path, capsys):
    _run(tmp_path, "c.pt", 2)
    assert cli(["train", "--resume", str(tmp_path / "c.pt"), "--lr", "0.1", "--steps", "3",
                "--quiet"]) == UsageError.exit_code
    assert "--lr 0.1 differs" in capsys.readouterr().err
    assert cli(["train", "--resume", str(tmp_path / "c.pt"), "--steps", "2",
                "--quiet"]) == UsageError.exit_code
    assert "already at step 2" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "mnist"], "--data-dir"),
    (["--batch", "0"], "batch_size"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--lr", "-1"], "cuda" if not
     torch.cuda.is_available() else "lr"),
])
def test_bad_training_options(tmp_path, capsys, argv, message):
    code = cli(["train", *argv, "--steps", "1", "--out", str(tmp_path / "x.pt"), "--quiet"])
    assert code != 0 and message in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


# Each value was accepted before (--steps 0 started a 500,000-step run; an infinite --lr or
# --grad-clip, a negative --seed or a float step count went on until they broke something).
@pytest.mark.parametrize("option, value", [
    ("--steps", "0"), ("--steps", "-3"), ("--batch", "0"), ("--lr", "0"), ("--lr", "inf"),
    ("--lr", "nan"), ("--warmup", "-1"), ("--grad-clip", "0"), ("--grad-clip", "nan"),
    ("--ema-decay", "1"), ("--ema-decay", "-0.5"), ("--ema-decay", "nan"), ("--seed", "-1"),
])
def test_nonsensical_recipe_values_are_usage_errors(tmp_path, capsys, option, value):
    code = cli(["train", "--steps", "1", option, value, "--out", str(tmp_path / "x.pt"),
                "--quiet"])
    err = capsys.readouterr().err
    assert code == UsageError.exit_code, err
    assert option in err and value in err and "internal error" not in err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("field, value", [
    ("steps", 2.0), ("steps", True), ("batch_size", 8.5), ("lr", "1e-3"), ("warmup", 1.5),
    ("grad_clip", float("inf")), ("ema_decay", float("nan")), ("seed", 2**64), ("hflip", 1),
    ("dataset", None),
])
def test_train_config_refuses_wrong_types_and_values(field, value):
    with pytest.raises(UsageError, match=rf"invalid --[a-z-]+ \({field}\) = "):
        TrainConfig(**{field: value})


def test_train_config_from_a_checkpoint_names_the_file_and_key():
    with pytest.raises(CheckpointError, match=r"x\.pt: 'meta\.train_config': 'lr' is '2e-4'"):
        TrainConfig.from_dict({**RECIPE.to_dict(), "lr": "2e-4"}, source="x.pt")
    with pytest.raises(CheckpointError, match=r"x\.pt: 'meta\.train_config': unknown key\(s\) "
                                              r"\['momentum'\]"):
        TrainConfig.from_dict({**RECIPE.to_dict(), "momentum": 0.9}, source="x.pt")
    with pytest.raises(CheckpointError, match=r"x\.pt: 'meta\.train_config' is a list"):
        TrainConfig.from_dict([], source="x.pt")
    assert TrainConfig.from_dict(RECIPE.to_dict(), source="x.pt") == RECIPE


# ------------------------------------------------------------- resume in a fresh process --

# Runs the CLI. With SDM_SNAPSHOT ("STEP:PATH") it copies the checkpoint right after the mid-run
# save of that step: the file a run killed at that point leaves behind. With SDM_WAIT it imports
# the modules (seconds), then waits for a line on stdin before it starts, so that it can load
# while the first run trains; it has no other state when it resumes.
_CLI = """
import os, shutil, sys
import sdm_neuro.data, sdm_neuro.training as training
from sdm_neuro.cli import main

if os.environ.get("SDM_WAIT"):  # the slow imports: sklearn (digits), dynamo (Adam's init)
    import sklearn.datasets, torch._dynamo
    sys.stdin.readline()
step, _, copy = (os.environ.get("SDM_SNAPSHOT") or "0:").partition(":")
real = training.save_checkpoint

def save_and_snapshot(path, *args, train_state=None, **kwargs):
    real(path, *args, train_state=train_state, **kwargs)
    if train_state is not None and train_state["step"] == int(step):
        shutil.copyfile(path, copy)

training.save_checkpoint = save_and_snapshot
sys.exit(main(sys.argv[1:]))
"""
_TINY_ARGS = ["--ch", "8", "--ch-mult", "1,2", "--num-res-blocks", "1", "--snn-steps", "2",
              "--img-size", "8", "--batch", "4", "--lr", "1e-3", "--warmup", "2",
              "--ema-decay", "0.9", "--device", "cpu", "--threads", "1", "--quiet"]


def _cli_process(args, **env):
    import os
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", _CLI, *args], text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_cli_resume_in_a_fresh_process_continues_bit_for_bit(tmp_path):
    straight, mid = tmp_path / "straight.pt", tmp_path / "mid.pt"
    resume = _cli_process(["train", "--resume", str(mid), "--device", "cpu", "--threads", "1",
                           "--quiet"], SDM_WAIT="1")
    try:
        first = _cli_process(["train", *_TINY_ARGS, "--steps", "6", "--save-every", "2",
                              "--out", str(straight)], SDM_SNAPSHOT=f"4:{mid}")
        _, err = first.communicate(timeout=240)
        assert first.returncode == 0, err
        assert read_train_state(mid)["step"] == 4 and read_train_state(straight)["step"] == 6
        assert read_checkpoint(mid).meta["train_config"]["steps"] == 6  # a mid-run file
        mid_net = read_checkpoint(mid, weights="net").state_dict
        _, err = resume.communicate("go\n", timeout=240)
        assert resume.returncode == 0, err
    finally:
        resume.kill()
    for weights in ("net", "ema"):
        a = read_checkpoint(straight, weights=weights).state_dict
        b = read_checkpoint(mid, weights=weights).state_dict
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), weights
    sa, sb = read_train_state(straight), read_train_state(mid)
    assert sa["step"] == sb["step"] == 6
    assert torch.equal(sa["rng"], sb["rng"]) and sa["losses"] == sb["losses"]
    assert sa["optimizer"]["state"].keys() == sb["optimizer"]["state"].keys()
    for i, entry in sa["optimizer"]["state"].items():
        assert all(torch.equal(v, sb["optimizer"]["state"][i][k]) for k, v in entry.items())
    # ...and steps 5-6 did change the weights: the resumed run went on from the mid-run file.
    final = read_checkpoint(mid, weights="net").state_dict
    assert any(not torch.equal(mid_net[k], final[k]) for k in final
               if final[k].is_floating_point())


# ------------------------------------------------------------ malformed resume checkpoints --

@pytest.fixture(scope="module")
def one_step(tmp_path_factory):
    """A training checkpoint after one step (shared: the tests only read it)."""
    tmp = tmp_path_factory.mktemp("one_step")
    _run(tmp, "c.pt", 1)
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
def test_resume_refuses_a_malformed_training_state(tmp_path, one_step, what, message):
    state = torch.load(one_step, weights_only=True)
    i = _tamper(state, what)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as info:
        _run(tmp_path, "out.pt", 2, resume=tmp_path / "bad.pt")
    msg = str(info.value)
    assert str(tmp_path / "bad.pt") in msg and message.format(i=i) in msg, msg
    assert not (tmp_path / "out.pt").exists()


def test_resume_refuses_another_model(tmp_path, one_step):
    other = TINY.replace(snn_steps=3)
    with pytest.raises(ConfigError, match=r"--resume .*c\.pt: the checkpoint's model .* is not "
                                          r"the model to train .*'snn_steps': 3"):
        train(other, RECIPE, out=tmp_path / "o.pt", device="cpu", resume=one_step,
              progress=False, save_every=0, log=lambda _: None)
