"""``sdm-neuro train``: --init (TSM from a non-TSM checkpoint, the checkpoint's architecture),
--resume (a changed recipe refused; in a fresh process, bit for bit), options refused before any
training, missing dataset files (exit code 5)."""

import pytest
import torch

from sdm_neuro import SpikingUNet
from sdm_neuro.checkpoint import read_checkpoint, read_train_state, save_checkpoint
from sdm_neuro.cli import main as cli
from sdm_neuro.errors import ConfigError, DatasetError, UsageError


def test_cli_trains_tsm_from_a_non_tsm_checkpoint(tmp_path, capsys, tiny_config):
    torch.manual_seed(0)
    base = save_checkpoint(tmp_path / "base.pt", tiny_config,
                           SpikingUNet(tiny_config).state_dict())
    out = tmp_path / "tsm.pt"
    assert cli(["train", "--init", str(base), "--tsm", "--ch", "8", "--ch-mult", "1,2",
                "--snn-steps", "2", "--img-size", "8", "--steps", "2", "--batch", "4",
                "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    ck = read_checkpoint(out)
    assert ck.config.tsm and any(k.endswith(".tsmp") for k in ck.state_dict)


def test_init_takes_the_architecture_of_its_checkpoint(tmp_path, capsys, tiny_config):
    base = save_checkpoint(tmp_path / "base.pt", tiny_config,
                           SpikingUNet(tiny_config).state_dict(), meta={"dataset": "digits"})
    out = tmp_path / "next.pt"
    assert cli(["train", "--init", str(base), "--steps", "1", "--batch", "4", "--device", "cpu",
                "--out", str(out), "--quiet"]) == 0
    assert read_checkpoint(out).config == tiny_config
    # Flags that change the architecture cannot load those weights: say which and why.
    code = cli(["train", "--init", str(base), "--ch", "16", "--steps", "1", "--batch", "4",
                "--device", "cpu", "--out", str(tmp_path / "bad.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert code == ConfigError.exit_code and "ch 8 vs 16" in err and str(base) in err
    assert not (tmp_path / "bad.pt").exists()


def test_resume_refuses_a_changed_recipe(tmp_path, capsys, train_tiny):
    train_tiny(tmp_path, "c.pt", 2)
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


def test_cli_train_without_dataset_files_exits_5(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = cli(["train", "--dataset", "mnist", "--data-dir", str(empty), "--steps", "1", "--out",
              str(tmp_path / "m.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == DatasetError.exit_code, err
    assert f"no train-images-idx3-ubyte[.gz] in {empty}" in err
    assert not (tmp_path / "m.pt").exists()


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
