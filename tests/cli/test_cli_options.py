"""CLI options and output locations are checked before any work starts: a bad value is exit
code 2 with a message naming the option and its limit, never an internal error (70), a long run
or a silently substituted default."""

import argparse
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from sdm_neuro import SpikingUNet
from sdm_neuro.cli import (
    positive_finite_float,
    positive_int,
    probability,
    seed_int,
)
from sdm_neuro.cli import main as cli
from sdm_neuro.run.checkpoints import apply_thresholds as _apply_thresholds

INT = "must be an integer >= 1"
POS = "must be a finite number > 0"
PROB = "must be a number in (0, 1]"
SEED = "must be an integer in [0, 4294967295]"


@pytest.fixture
def no_work(monkeypatch):
    """Every long computation a command can start raises instead: a check made too late shows
    as 'work started: NAME' (an internal error), not as a long run."""
    import sdm_neuro.data
    import sdm_neuro.compiler.pipeline
    import sdm_neuro.diffusion
    import sdm_neuro.evaluation.evaluate
    import sdm_neuro.export.onnx
    import sdm_neuro.training

    def stop(name):
        def run(*args, **kwargs):
            raise RuntimeError(f"work started: {name}")
        return run

    for module, name in ((sdm_neuro.diffusion, "generate"),
                         (sdm_neuro.data, "load_dataset"),
                         (sdm_neuro.compiler.pipeline, "build_integer_graph"),
                         (sdm_neuro.training, "train"),
                         (sdm_neuro.evaluation.evaluate, "fit_classifier"),
                         (sdm_neuro.export.onnx, "export_onnx")):
        monkeypatch.setattr(module, name, stop(name))


# ---------------------------------------------------------------------------------------------
# values refused at parse time
# ---------------------------------------------------------------------------------------------

BAD_VALUES = [
    ("sample", "--steps", "0", INT), ("sample", "--steps", "-3", INT),
    ("sample", "--steps", "abc", "expected an integer"),
    ("sample", "--num", "0", INT), ("sample", "--batch", "0", INT),
    ("sample", "--threads", "-1", INT), ("sample", "--threads", "0", INT),
    ("sample", "--threshold", "inf", POS), ("sample", "--threshold", "nan", POS),
    ("sample", "--threshold", "0", POS), ("sample", "--threshold", "-1", POS),
    ("sample", "--seed", "-1", SEED), ("sample", "--seed", str(2**32), SEED),
    ("evaluate", "--steps", "0", INT), ("evaluate", "--num", "0", INT),
    ("evaluate", "--batch", "0", INT), ("evaluate", "--kid-subsets", "0", INT),
    ("evaluate", "--kid-subset-size", "0", INT), ("evaluate", "--threshold", "nan", POS),
    ("evaluate", "--threads", "0", INT), ("evaluate", "--seed", "-5", SEED),
    ("simulate", "--steps", "0", INT), ("simulate", "--num", "0", INT),
    ("simulate", "--batch", "0", INT), ("simulate", "--compare-every", "0", INT),
    ("simulate", "--compare-every", "-2", INT), ("simulate", "--threshold-scale", "inf", POS),
    ("simulate", "--threshold-scale", "nan", POS), ("simulate", "--threshold-scale", "0", POS),
    ("simulate", "--threshold-scale", "-1", POS), ("simulate", "--dt", "0", POS),
    ("simulate", "--dt", "nan", POS), ("simulate", "--dt", "inf", POS),
    ("simulate", "--dt", "-0.001", POS), ("simulate", "--time-steps", "0", INT),
    ("simulate", "--time-steps", "-1", INT), ("simulate", "--rate", "-0.1", PROB),
    ("simulate", "--rate", "1.5", PROB), ("simulate", "--rate", "nan", PROB),
    ("simulate", "--rate", "0", PROB), ("simulate", "--snn-steps", "0", INT),
    ("simulate", "--threads", "-1", INT),
    ("energy-report", "--batch", "0", INT), ("energy-report", "--calls", "0", INT),
    ("energy-report", "--steps", "0", INT), ("energy-report", "--steps", "-1", INT),
    ("energy-report", "--threshold-scale", "nan", POS), ("energy-report", "--seed", "-1", SEED),
    ("simulate", "--calibration-images", "0", INT), ("export", "--calibration-images", "-1", INT),
    ("energy-report", "--calibration-images", "1.5", "expected an integer"),
    ("export", "--threshold-scale", "inf", POS), ("export", "--num", "0", INT),
    ("export", "--dt", "nan", POS), ("export", "--time-steps", "0", INT),
    ("export", "--rate", "2", PROB), ("export", "--threads", "0", INT),
    ("export", "--seed", str(2**70), SEED),
    ("train", "--steps", "0", INT), ("train", "--steps", "-1", INT),
    ("train", "--save-every", "0", INT), ("train", "--threads", "-1", INT),
    ("train", "--seed", "-1", SEED),
    ("train-classifier", "--threads", "0", INT), ("train-classifier", "--img-size", "0", INT),
    ("train-classifier", "--seed", "-2", SEED),
]


@pytest.mark.parametrize("command, option, value, limit", BAD_VALUES,
                         ids=[f"{c} {o} {v}" for c, o, v, _ in BAD_VALUES])
def test_bad_option_values_are_usage_errors(tmp_path, capsys, no_work, command, option, value,
                                            limit):
    out = tmp_path / ("o.pt" if command.startswith("train") else "o")
    code = cli([command, option, value, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"argument {option}: {limit}" in err
    assert "work started" not in err and not out.exists()


def test_calibration_images_are_refused_where_nothing_is_calibrated(tmp_path, capsys, no_work,
                                                                    micro_bundle):
    """A bundle's quantization is fixed; a NIR graph calibrates on its input: the option would
    be ignored there, so it is an error before any work."""
    out = tmp_path / "o"
    assert cli(["simulate", "--bundle", str(micro_bundle[0]), "--calibration-images", "8",
                "--out", str(out), "--quiet"]) == 2
    assert "--calibration-images: a bundle's quantization was fixed at export" in \
        capsys.readouterr().err
    # before the bundle is read: a feed-forward bundle, energy-report's bundle too
    for cmd in ("simulate", "energy-report"):
        assert cli([cmd, "--bundle", str(tmp_path), "--calibration-images", "8",
                    "--out", str(out), "--quiet"]) == 2
        assert "--calibration-images: a bundle's quantization was fixed at export" in \
            capsys.readouterr().err
    nir = tmp_path / "net.nir"
    nir.write_bytes(b"")
    assert cli(["export", str(nir), "--calibration-images", "8", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{nir}: --calibration-images calibrates a U-Net checkpoint" in err
    assert "work started" not in err and not out.exists()


def test_kid_subset_size_1_is_refused_before_sampling(tmp_path, capsys, no_work):
    out = tmp_path / "o"
    assert cli(["evaluate", "--kid-subset-size", "1", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--kid-subset-size must be an integer >= 2" in err
    assert "work started" not in err and not out.exists()


def test_bad_option_exits_2_from_the_shell():
    r = subprocess.run([sys.executable, "-m", "sdm_neuro", "simulate", "--compare-every", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert f"argument --compare-every: {INT} (got 0)" in r.stderr
    assert "internal error" not in r.stderr


def test_option_types_accept_the_limits_and_refuse_beyond():
    assert positive_int("1") == 1 and positive_int("250") == 250
    assert positive_finite_float("1e-3") == 0.001 and positive_finite_float("0.998") == 0.998
    assert probability("1e-9") == 1e-9 and probability("1") == 1.0 and probability("0.2") == 0.2
    assert seed_int("0") == 0 and seed_int("4294967295") == 4294967295
    for parse, text in ((positive_int, "0"), (positive_int, "1.5"), (positive_int, ""),
                        (positive_finite_float, "-inf"), (positive_finite_float, "1e999"),
                        (positive_finite_float, "x"), (probability, "1.0000001"),
                        (probability, "-0.0001"), (probability, "0"), (probability, "inf"),
                        (seed_int, "4294967296"), (seed_int, "-1")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_help_and_version_return_0(capsys):
    assert cli(["--version"]) == 0
    assert cli(["sample", "--help"]) == 0
    assert "--threshold" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# --steps against the model, before sampling or quantization
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["sample", "evaluate", "simulate", "energy-report"])
def test_steps_beyond_the_models_diffusion_steps_stop_before_the_work(tmp_path, capsys, no_work,
                                                                       command):
    # the shipped default model has 1000 diffusion steps
    code = cli([command, "--steps", "1001", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--steps must be in [1, 1000] (got 1001)" in err and "work started" not in err


def test_train_steps_reach_the_run_unchanged(tmp_path, capsys, monkeypatch):
    import sdm_neuro.training

    seen = []

    def fake_train(model_config, config, **kwargs):
        seen.append(config.steps)
        return SimpleNamespace(final_loss=0.0, log_json="log.json", loss_png="loss.png")

    monkeypatch.setattr(sdm_neuro.training, "train", fake_train)
    out = str(tmp_path / "x.pt")
    assert cli(["train", "--steps", "3", "--out", out, "--quiet"]) == 0
    assert cli(["train", "--out", out, "--quiet"]) == 0
    assert seen == [3, 500_000]  # the documented default only when --steps is left out


# ---------------------------------------------------------------------------------------------
# output locations
# ---------------------------------------------------------------------------------------------

DIR_COMMANDS = [["sample"], ["evaluate"], ["simulate"], ["energy-report", "--profile", "loihi2"],
                ["export"], ["export", "--target", "onnx"]]
IDS = [" ".join(c) for c in DIR_COMMANDS]
# (command, the work it starts once the checks pass)
BUNDLE_COMMANDS = [(["evaluate"], "generate"), (["simulate"], "load_dataset"),
                   (["energy-report", "--profile", "loihi2"], "load_dataset"),
                   (["export"], "load_dataset"), (["export", "--target", "onnx"], "export_onnx")]


def _read_only(path: Path, monkeypatch) -> None:
    """Make ``path`` unwritable; root ignores permission bits, so there os.access is made to
    answer what it answers a user (or on a read-only file system)."""
    path.chmod(0o555)
    if os.access(path, os.W_OK):
        real = os.access

        def access(p, mode, *args, **kwargs):
            if Path(p) == path and mode & os.W_OK:
                return False
            return real(p, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)


@pytest.mark.parametrize("command", DIR_COMMANDS, ids=IDS)
def test_out_that_is_a_file_is_refused_first(tmp_path, capsys, no_work, command):
    out = tmp_path / "results"
    out.write_text("keep me")
    code = cli([*command, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--out {out}: exists and is not a directory" in err and "work started" not in err
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("command", DIR_COMMANDS, ids=IDS)
def test_out_below_a_file_is_refused_first(tmp_path, capsys, no_work, command):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code = cli([*command, "--out", str(blocker / "sub" / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{blocker} is not a directory" in err and "work started" not in err


@pytest.mark.parametrize("command", DIR_COMMANDS, ids=IDS)
def test_out_in_a_read_only_directory_is_refused_first(tmp_path, capsys, no_work, monkeypatch,
                                                       command):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(ro, monkeypatch)
    try:
        code = cli([*command, "--out", str(ro / "new" / "o"), "--quiet"])
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--out {ro / 'new' / 'o'}: {ro} is not writable" in err
    assert "work started" not in err and list(ro.iterdir()) == []


@pytest.mark.parametrize("command, work", BUNDLE_COMMANDS, ids=[" ".join(c) for c, _ in
                                                                BUNDLE_COMMANDS])
def test_non_empty_out_needs_force_before_the_work(tmp_path, capsys, no_work, command, work):
    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("old")
    code = cli([*command, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--out {out}: output directory exists and is not empty; pass --force" in err
    assert "work started" not in err
    # with --force the check passes and the work starts (here: stops at once); a failed run
    # leaves the old output as it was
    code = cli([*command, "--out", str(out), "--force", "--quiet"])
    assert code == 70 and f"work started: {work}" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no temporary directory left


def test_sample_writes_into_an_existing_directory(tmp_path, capsys, no_work):
    # sample has no --force: it writes its three files into --out, whatever else is there
    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("old")
    assert cli(["sample", "--out", str(out), "--quiet"]) == 70
    assert "work started: generate" in capsys.readouterr().err


@pytest.mark.parametrize("command, option", [
    (["train", "--out", "{d}"], "--out"),
    (["train", "--out", "{f}", "--release", "{d}"], "--release"),
    (["train-classifier", "--out", "{d}"], "--out"),
])
def test_file_output_that_is_a_directory_is_refused_first(tmp_path, capsys, no_work, command,
                                                          option):
    d = tmp_path / "adir"
    d.mkdir()
    argv = [a.format(d=d, f=tmp_path / "x.pt") for a in command]
    code = cli([*argv, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{option} {d}: is a directory" in err and "work started" not in err


@pytest.mark.parametrize("command, option", [
    (["train", "--out", "{ro}/x.pt"], "--out"),
    (["train", "--out", "{ok}/x.pt", "--release", "{ro}/r.pt"], "--release"),
    (["train-classifier", "--out", "{ro}/sub/c.pt"], "--out"),
])
def test_file_output_in_a_read_only_directory_is_refused_first(tmp_path, capsys, no_work,
                                                               monkeypatch, command, option):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(ro, monkeypatch)
    argv = [a.format(ro=ro, ok=tmp_path) for a in command]
    try:
        code = cli([*argv, "--quiet"])
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{option} {ro}/" in err and f"{ro} is not writable" in err
    assert "work started" not in err and list(ro.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# --threshold-scale: the help says what it does
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["simulate", "energy-report", "export"])
def test_threshold_scale_help_says_the_thresholds_are_set(capsys, tiny_config, command):
    assert cli([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "set every firing threshold to X" in text and "times X" not in text
    # ... which is what it does: a model with threshold 0.5 gets thresholds 2.0, not 1.0
    model = SpikingUNet(tiny_config)
    model.set_threshold(0.5)
    _apply_thresholds(argparse.Namespace(threshold_scale=2.0), model)
    assert {n.threshold for _, n in model.neurons()} == {2.0}


@pytest.mark.parametrize("command", DIR_COMMANDS[1:], ids=IDS[1:])
@pytest.mark.parametrize("target", ["real", "nowhere"])
def test_bundle_out_that_is_a_symlink_is_refused_first(tmp_path, capsys, no_work, command,
                                                       target):
    # the finished bundle is renamed into place, which would replace the link (or, for a link
    # to nothing, fail only at the end)
    (tmp_path / "real").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / target)
    code = cli([*command, "--out", str(link), "--force", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--out {link}: is a symbolic link" in err and "work started" not in err
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_sample_out_that_is_a_broken_symlink_is_refused_first(tmp_path, capsys, no_work):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    code = cli(["sample", "--out", str(link), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"--out {link}: is a broken symbolic link" in err
    assert "work started" not in err


def test_resume_in_a_read_only_directory_is_refused_before_training(tmp_path, capsys, no_work,
                                                                    monkeypatch, tiny_config):
    from sdm_neuro.checkpoint import save_checkpoint

    ro = tmp_path / "ro"
    ro.mkdir()
    ckpt = save_checkpoint(ro / "m.pt", tiny_config, SpikingUNet(tiny_config).state_dict())
    _read_only(ro, monkeypatch)
    try:  # without --out the resumed checkpoint is rewritten in place
        code = cli(["train", "--resume", str(ckpt), "--steps", "5", "--quiet"])
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--resume {ckpt}: {ro} is not writable" in err and "work started" not in err
