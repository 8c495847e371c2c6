"""``sdm-neuro profiles`` end to end: the table of sourced figures, a bad profile's exit code."""

from sdm_neuro.cli import main as cli
from sdm_test_support import GOOD_PROFILE



def test_profiles_command_lists_sources(capsys):
    assert cli(["profiles", "loihi2"]) == 0
    out = capsys.readouterr().out
    assert "synop_pj" in out and "Davies" in out and "derived" in out


def test_bad_profile_exits_with_its_code(tmp_path, capsys):
    bad = tmp_path / "mine.toml"
    bad.write_text(GOOD_PROFILE.replace('kind = "neuromorphic"', 'kind = "gpu"'))
    assert cli(["profiles", str(bad)]) == 6
    assert "kind must be one of" in capsys.readouterr().err
