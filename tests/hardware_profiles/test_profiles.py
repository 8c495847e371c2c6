"""Hardware profiles: the strict schema, the shipped files, the design-rule checks."""

import os
import re
from pathlib import Path

import pytest
import torch

from sdm_neuro import SpikingUNet
from sdm_neuro.cli import main as cli
from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
from sdm_neuro.errors import ProfileError
from sdm_neuro.hardware_profiles.constraints import check
from sdm_neuro.hardware_profiles.profile import TAGS, get_profile, load_profile, shipped_profiles
from sdm_neuro.ir.connectivity import fan_in
from sdm_test_support import GOOD_PROFILE



def _write(tmp_path, text, name="mine.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_required_platform_ships_with_sourced_figures():
    names = set(shipped_profiles())
    assert {"loihi2", "loihi1", "spinnaker2", "truenorth", "speck", "xylo", "generic45nm_fp32",
            "generic45nm_int8"} <= names
    for name in names:
        prof = get_profile(name)
        assert prof.name == name
        for key, fig in prof.sources():
            assert fig.tag in TAGS and fig.source.strip(), (name, key)
    # no per-synop energy is published for Loihi 2: the profile must say how it got one
    assert get_profile("loihi2").energy["synop_pj"].derivation
    conv = get_profile("generic45nm_fp32").energy
    assert conv["mac_pj"].value == 4.6 and conv["ac_pj"].value == 0.9


def test_a_user_profile_loads(tmp_path):
    prof = get_profile(_write(tmp_path, GOOD_PROFILE))
    assert prof.limits["neurons_per_core"].value == 100
    assert prof.energy["synop_pj"].label == "2.5 (estimated, derived)"


@pytest.mark.parametrize("edit, message", [
    (lambda s: 'colour = "red"\n' + s, "unknown key(s) colour"),
    (lambda s: s + 'colour = "red"\n', "unknown key(s) energy.colour"),
    (lambda s: s.replace('title = "My chip"\n', ""), "missing key 'title'"),
    (lambda s: s.replace("neurons_per_core", "neurons_per_cor"), "limits.neurons_per_cor"),
    (lambda s: s.replace('tag = "datasheet"', 'tag = "rumour"'), "tag must be one of"),
    (lambda s: s.replace(', source = "the manual"', ""), "missing field 'source'"),
    (lambda s: s.replace("value = 100", "value = 1.5"), "positive integer"),
    (lambda s: s.replace("value = 100", "value = -3"), "positive integer"),
    (lambda s: s.replace("[energy]\nsynop_pj", "[energy]\nac_pj"), "energy.synop_pj"),
    (lambda s: s.replace('kind = "neuromorphic"', 'kind = "gpu"'), "kind must be one of"),
    (lambda s: s + "[limits\n", "not valid TOML"),
    (lambda s: s.replace("value = 2.5", "value = inf"),
     "energy.synop_pj: value must be a finite non-negative number, got inf"),
    (lambda s: s.replace("value = 2.5", "value = -inf"), "energy.synop_pj: value must be a finite"),
    (lambda s: s.replace("value = 2.5", "value = nan"), "energy.synop_pj: value must be a finite"),
    (lambda s: s.replace("value = 2.5", "value = -0.5"), "energy.synop_pj: value must be a finite"),
    (lambda s: s.replace("value = 2.5", "value = true"), "energy.synop_pj: value must be a finite"),
    (lambda s: s.replace("value = 2.5", 'value = "2.5"'),
     "energy.synop_pj: value must be a finite"),
    (lambda s: s.replace("value = 100", "value = 0"),
     "limits.neurons_per_core: value must be a positive integer, got 0"),
    (lambda s: s + '[power]\nstatic_power_mw = { value = inf, tag = "measured", source = "m" }\n',
     "power.static_power_mw: value must be a finite non-negative number, got inf"),
    (lambda s: s.replace("[energy]", 'kernel_memory_entries_per_layer = { value = [16, 0], '
                                     'tag = "datasheet", source = "m" }\n[energy]'),
     "limits.kernel_memory_entries_per_layer: value must be a non-empty list of positive"),
    (lambda s: s + "x = " + "[" * 50_000 + "]" * 50_000 + "\n", "not valid TOML"),
    (lambda s: s.replace('source = "the manual" }', 'source = "m", unit = "x" }'),
     "unknown field(s) unit"),
])
def test_schema_errors_name_the_file_and_key(tmp_path, edit, message):
    path = _write(tmp_path, edit(GOOD_PROFILE))
    with pytest.raises(ProfileError, match=re.escape(message)) as e:
        load_profile(path)
    assert str(path) in str(e.value)


def test_profile_files_that_are_not_regular_small_files(tmp_path, capsys):
    """/dev/zero (endless), a named pipe (blocks on open), a directory and an oversized file
    are refused before anything is read."""
    pipe = tmp_path / "pipe.toml"
    os.mkfifo(pipe)
    big = _write(tmp_path, GOOD_PROFILE + "#" * (1 << 20), "big.toml")
    for path, message in ((Path("/dev/zero"), "is a device"), (pipe, "is a named pipe"),
                          (tmp_path, "is a directory"), (big, "more than the 1,048,576 bytes")):
        with pytest.raises(ProfileError, match=re.escape(message)) as e:
            get_profile(path)
        assert str(path) in str(e.value)
    assert cli(["profiles", str(pipe)]) == ProfileError.exit_code
    assert str(pipe) in capsys.readouterr().err


def test_unknown_profile_and_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="unknown profile 'loihi9'"):
        get_profile("loihi9")
    with pytest.raises(ProfileError, match="no such profile file"):
        get_profile(tmp_path / "absent.toml")


@pytest.fixture(scope="module")
def graph(tiny_config_ch4_t3):
    torch.manual_seed(0)
    cfg = tiny_config_ch4_t3
    model = SpikingUNet(cfg).eval()
    return build_integer_graph(model, calibration_inputs(torch.rand(8, 1, 8, 8) * 2 - 1,
                                                         count=4, batch_size=4))


def test_fan_in_counts_distinct_source_neurons(graph):
    """Brute force: the source neurons with a non-zero weight onto an interior target."""
    from torch.nn import functional as F

    for p in graph.projections:
        if p.dst == "host":
            continue
        c, h, w = graph.population(p.src).shape
        best = 0
        w_int = p.weight_int.abs().amax(0) if p.weight_int.dim() == 5 else p.weight_int.abs()
        for oc in range(w_int.shape[0]):
            # one target at the centre of the output map: which inputs reach it?
            grad_src = torch.zeros(1, c, h, w, dtype=torch.float64, requires_grad=True)
            z = F.interpolate(grad_src, scale_factor=p.upsample) if p.upsample > 1 else grad_src
            out = F.conv2d(z, w_int[oc:oc + 1].double(), stride=p.stride, padding=p.padding)
            out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
            best = max(best, int((grad_src.grad != 0).sum()))
        assert fan_in(p) == best, (p.src, p.dst)


def test_violations_state_where_what_actual_and_limit(tmp_path, graph):
    small = GOOD_PROFILE.replace("value = 100", "value = 64").replace("[energy]", (
        'fan_in_per_neuron_max = { value = 20, tag = "datasheet", source = "m" }\n'
        'weight_bits = { value = 4, tag = "datasheet", source = "m" }\n'
        'cores_per_chip = { value = 2, tag = "datasheet", source = "m" }\n[energy]'))
    placement = check(graph, get_profile(_write(tmp_path, small)))
    assert not placement.fits
    msgs = [str(v) for v in placement.violations]
    assert "network: weight precision (bits) is 8, limit 4" in msgs
    worst = max((sum(fan_in(p) for p in graph.inputs(pop.name)), pop.name)
                for pop in graph.populations)
    assert f"{worst[1]}: fan-in (source neurons per neuron) is {worst[0]:,}, limit 20" in msgs
    # cores: neurons / 64 per population (no synaptic memory limit given), chips of 2 cores
    want = {pop.name: -(-pop.neurons // 64) for pop in graph.populations}
    assert placement.cores == want
    assert placement.chips == -(-sum(want.values()) // 2)
