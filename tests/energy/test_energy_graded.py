"""``energy-report`` with both Loihi 2 mappings (composed and graded) side by side, on the tiny
randomized model: the JSON and printed report, the graded synaptic operations against an
independent graded-simulator run on the same noised images, a profile without graded spikes,
``--mapping composed`` (today's report) and ``--mapping graded``, and ``--stats`` of either
mapping."""

import json

import pytest
import torch

from sdm_neuro import SpikingUNet
from sdm_neuro.cli import main as cli
from sdm_neuro.errors import UsageError

# the composed report's top-level keys before the graded mapping (sdm-neuro 0.1.0)
COMPOSED_KEYS = {"tool", "bundle", "checkpoint", "sampler", "steps", "calls_per_image",
                 "activity_source", "unit_note", "layers", "by_t", "totals_per_call",
                 "totals_per_image", "papers_convention", "ann_baseline_45nm_fp32", "neurobench",
                 "profiles"}
PROFILE_KEYS = {"title", "kind", "energy", "derived_figures", "constraints", "per_population_pj"}
COMMON = ["--profile", "loihi2", "--profile", "loihi1", "--calls", "2", "--batch", "2",
          "--sampler", "ddim", "--steps", "4", "--quiet"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_config_ch4, randomized):
    from sdm_neuro.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = tiny_config_ch4
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", cfg,
                           randomized(SpikingUNet(cfg)).state_dict(), meta={"dataset": "digits"})


@pytest.fixture(scope="module")
def both(ckpt, tmp_path_factory):
    """(report, printed text, out folder) of the default --mapping both."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("both") / "e"
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert cli(["energy-report", str(ckpt), *COMMON, "--out", str(out)]) == 0
    return json.loads((out / "energy.json").read_text()), text.getvalue(), out


def test_both_mappings_in_the_json_printout_and_chart(both):
    rep, text, out = both
    sec = rep["mappings"]
    assert set(sec) >= {"composed", "graded"}
    for m in ("composed", "graded"):
        e = sec[m]["profiles"]["loihi2"]
        assert e["supported"] and e["energy"]["per_image_total_uj"] > 0
        assert e["placement"]["chips"] >= 1 and e["placement"]["total_cores"] >= 1
        assert sum(e["breakdown_per_image_uj"].values()) == pytest.approx(
            e["energy"]["per_image_total_uj"])
        assert sec[m]["synops_vs_pytorch"] == pytest.approx(
            sec[m]["synops_per_call"] / rep["neurobench"]["effective_synaptic_operations"]["ACs"])
    graded = sec["graded"]["profiles"]["loihi2"]["breakdown_per_image_uj"]
    assert {"synaptic ops", "spike messages", "graded messages", "host"} <= set(graded)
    # Loihi 2's profile gives no neuron-update or static figure: said, not silently zero
    assert "neuron updates" not in graded
    assert "no neuron-update figure in this profile: not costed" in " ".join(text.split())
    # the composed section repeats the top-level composed report
    assert sec["composed"]["profiles"]["loihi2"]["energy"] == rep["profiles"]["loihi2"]["energy"]
    assert sec["composed"]["synops_per_call"] == rep["totals_per_call"]["synaptic_ops"]
    assert "mappings side by side" in text and "where the energy goes, loihi2" in text
    assert "composed" in text and "graded" in text and "ANN baseline" in text
    assert (out / "energy_mappings.png").stat().st_size > 1000


def test_profile_without_graded_spikes_shows_the_reason(both):
    rep, text, _ = both
    e = rep["mappings"]["graded"]["profiles"]["loihi1"]
    assert e == {"supported": False, "reason": e["reason"]}
    assert "no graded spikes" in e["reason"]
    assert rep["mappings"]["composed"]["profiles"]["loihi1"]["supported"]
    assert "loihi1 cannot run the graded mapping" in " ".join(text.split())


def test_graded_synops_equal_an_independent_simulator_run_on_the_same_images(both, ckpt):
    """Rebuild both graphs as deploy does, redraw the noised images of each measured t from the
    seed, and count with the simulators themselves: the graded synops per call are the sum of
    the graded counters, and the composed ones of the composed counters on the same images."""
    from sdm_neuro.checkpoint import load_model
    from sdm_neuro.compiler.pipeline import build_integer_graph, calibration_inputs
    from sdm_neuro.compiler.quantize_graded import build_graded_graph
    from sdm_neuro.data import load_dataset
    from sdm_neuro.diffusion import LinearSchedule
    from sdm_neuro.simulators.graded import GradedSimulator
    from sdm_neuro.simulators.integer import Counters, IntegerSimulator

    rep, _, _ = both
    model, _ = load_model(ckpt)
    images = load_dataset("digits", split="train", img_size=model.config.img_size).images
    calib = calibration_inputs(images, seed=0)
    graded, composed = build_graded_graph(model, calib), build_integer_graph(model, calib)
    sch = LinearSchedule(num_steps=model.config.diffusion_steps)
    gen = torch.Generator().manual_seed(0)
    batch, ts = 2, [b["t"] for b in rep["mappings"]["graded"]["by_t"]]
    assert ts == [b["t"] for b in rep["by_t"]] and len(ts) == 2
    g_total = Counters()
    for i, t in enumerate(ts):
        idx = torch.randint(len(images), (batch,), generator=gen)
        x0, tt = images[idx], torch.full((batch,), t)
        x = sch.q_sample(x0, tt, torch.randn(x0.shape, generator=gen))
        g, c = Counters(), Counters()
        GradedSimulator(graded)(x, tt, g)
        IntegerSimulator(composed)(x, tt, c)
        assert rep["mappings"]["graded"]["by_t"][i]["synops"] == pytest.approx(
            sum(g.synops.values()) / batch)
        assert rep["by_t"][i]["synops"] == pytest.approx(sum(c.synops.values()) / batch)
        g_total.synops.update({k: g_total.synops[k] + v for k, v in g.synops.items()})
        g_total.payloads.update({k: g_total.payloads[k] + v for k, v in g.payloads.items()})
    n = len(ts) * batch
    sec = rep["mappings"]["graded"]
    assert sum(g_total.synops.values()) > 0
    assert sec["synops_per_call"] == pytest.approx(sum(g_total.synops.values()) / n)
    # the graded messages: non-zero payloads of the relays that send integers (not 0/1 copies),
    # and the graded synops: those out of these relays
    integer_relays = {r.name for r in graded.relays if r.kind != "upsample"}
    assert sec["synops_split"]["graded"] == pytest.approx(
        sum(v for k, v in g_total.synops.items() if k.split("->")[0] in integer_relays) / n)
    assert sec["synops_split"]["binary"] + sec["synops_split"]["graded"] == pytest.approx(
        sec["synops_per_call"])
    assert sec["totals_per_call"]["graded_messages"] == pytest.approx(
        sum(v for k, v in g_total.payloads.items() if k in integer_relays) / n)


def test_mapping_composed_reproduces_todays_report(both, ckpt, tmp_path):
    out = tmp_path / "c"
    assert cli(["energy-report", str(ckpt), *COMMON, "--mapping", "composed", "--out",
                str(out)]) == 0
    rep = json.loads((out / "energy.json").read_text())
    assert set(rep) == COMPOSED_KEYS | {"mappings"} and list(rep["mappings"]) == [
        "pytorch_effective_synops_per_call", "pytorch_effective_macs_per_call",
        "synops_reference", "composed"]
    assert all(set(p) >= PROFILE_KEYS for p in rep["profiles"].values())
    # the same numbers as the composed part of a --mapping both run (same images, same t)
    ref = both[0]
    for key in ("layers", "by_t", "totals_per_call", "profiles", "neurobench"):
        assert rep[key] == ref[key], key
    for png in ("energy_per_layer.png", "firing_rate.png", "energy_per_image.png",
                "energy_mappings.png"):
        assert (out / png).stat().st_size > 1000


def test_mapping_graded_alone(both, ckpt, tmp_path, capsys):
    out = tmp_path / "g"
    assert cli(["energy-report", str(ckpt), *COMMON, "--mapping", "graded", "--out",
                str(out)]) == 0
    rep = json.loads((out / "energy.json").read_text())
    assert "layers" not in rep and "profiles" not in rep and "composed" not in rep["mappings"]
    assert rep["mappings"]["graded"] == both[0]["mappings"]["graded"]
    assert sorted(p.name for p in out.glob("*.png")) == ["energy_mappings.png"]
    text = capsys.readouterr().out
    assert "mappings side by side" in text and "energy_mappings.png" in text


def _graded_simulate_json(path, rep: dict) -> None:
    """A graded simulate.json (the layout run.simulation writes: relays among the layers with
    payloads_per_call), made from the report's own graded per-call figures x batch 2."""
    sec, batch = rep["mappings"]["graded"], 2
    layers = {n["node"]: ({"relay": n["kind"], "payloads_per_call": n["events"] * batch}
                          if n["kind"] != "IF" else {"spikes_per_call": n["events"] * batch})
              for n in sec["nodes"]}
    synops = {k: v * batch for k, v in _synops_by_connection(sec).items()}
    path.write_text(json.dumps({
        "mapping": "graded", "sampler": "ddim", "steps": 2, "num": 2, "batch": batch,
        "counters_per_call": {"neuron_updates": sec["totals_per_call"]["neuron_updates"] * batch,
                              "host_macs": sec["totals_per_call"]["host_macs"] * batch,
                              "synops": synops}, "layers": layers}))


def _synops_by_connection(sec: dict) -> dict:
    # the report gives synops out of each node; one connection per source keeps the total
    return {f"{n['node']}->x": n["synops_out"] for n in sec["nodes"] if n["synops_out"]}


def test_stats_of_a_graded_run_apply_to_the_graded_mapping(both, ckpt, tmp_path):
    from sdm_neuro.run.simulation import read_simulate_stats as read_stats

    rep = both[0]
    stats = tmp_path / "simulate.json"
    _graded_simulate_json(stats, rep)
    mapping, m = read_stats(stats)
    assert mapping == "graded" and m.chain == ("ddim", 2)
    assert sum(m.activity.synops.values()) == pytest.approx(
        rep["mappings"]["graded"]["synops_per_call"])
    # connection names that are not the graph's are refused, naming the file
    out = tmp_path / "e"
    args = ["energy-report", str(ckpt), "--stats", str(stats), "--profile", "loihi2",
            "--calls", "1", "--batch", "2", "--quiet"]
    assert cli([*args, "--out", str(out)]) == UsageError.exit_code and not out.exists()
    # with the real connection names: the graded mapping reads them, the composed is measured
    from sdm_neuro.checkpoint import load_model
    from sdm_neuro.compiler.lower_graded import lower_graded

    graph = lower_graded(load_model(ckpt)[0].double())
    data = json.loads(stats.read_text())
    first = {}
    for c in graph.connections:
        first.setdefault(c.src, f"{c.src}->{c.dst}")
    data["counters_per_call"]["synops"] = {first[k.split("->")[0]]: v for k, v in
                                           data["counters_per_call"]["synops"].items()}
    stats.write_text(json.dumps(data))
    assert cli([*args, "--out", str(out)]) == 0
    got = json.loads((out / "energy.json").read_text())
    assert "simulate (graded mapping)" in got["mappings"]["graded"]["activity_source"]
    assert got["mappings"]["graded"]["synops_per_call"] == pytest.approx(
        rep["mappings"]["graded"]["synops_per_call"])
    assert got["activity_source"].startswith("measured") and (got["sampler"], got["steps"]) == (
        "ddim", 2)
    # statistics of a mapping that --mapping leaves out are refused
    assert cli([*args, "--mapping", "composed", "--out", str(tmp_path / "x")]) == \
        UsageError.exit_code
