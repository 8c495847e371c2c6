"""IF neuron: hand-computed sequences and the surrogate gradient."""

import math

import pytest
import torch

from sdm_neuro.models import IFNeuron, atan_spike


def run(neuron, inputs):
    return neuron(torch.tensor(inputs, dtype=torch.float32).view(-1, 1)).view(-1).tolist()


def test_integrate_fire_hard_reset_by_hand():
    # v: 0.4, 0.8, 1.2 -> spike, reset 0; 0.4, 0.8 (no spike)
    assert run(IFNeuron(), [0.4, 0.4, 0.4, 0.4, 0.4]) == [0, 0, 1, 0, 0]
    # 0.6 + 0.7 = 1.3 -> spike; reset to 0 (not subtract): 0.2 stays below
    assert run(IFNeuron(), [0.6, 0.7, 0.2, 0.0]) == [0, 1, 0, 0]


def test_fires_exactly_at_threshold():
    assert run(IFNeuron(), [1.0]) == [1]
    assert run(IFNeuron(), [0.5, 0.5]) == [0, 1]  # 0.5 + 0.5 == 1.0 exactly in float32
    below = float(torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)))
    assert run(IFNeuron(), [below]) == [0]


def test_negative_input_has_no_floor_and_no_leak():
    # v = -2, -1.5, -1, ..., reaches 1.0 after 6 more steps of +0.5
    seq = [-2.0] + [0.5] * 6
    assert run(IFNeuron(), seq) == [0] * 6 + [1]


def test_threshold_guidance_changes_firing():
    n = IFNeuron(threshold=1.0)
    assert run(n, [0.999]) == [0]
    n.reset()
    n.threshold = 0.998
    assert run(n, [0.999]) == [1]


def test_state_persists_until_reset():
    n = IFNeuron()
    assert run(n, [0.6]) == [0]
    assert run(n, [0.6]) == [1]  # carried v = 0.6
    n.reset()
    assert run(n, [0.6]) == [0]


@pytest.mark.parametrize("x", [-1.0, -0.1, 0.0, 0.3, 2.0])
def test_atan_surrogate_gradient(x):
    v = torch.tensor([x], requires_grad=True)
    atan_spike(v).sum().backward()
    alpha = 2.0
    expected = alpha / 2 / (1 + (math.pi / 2 * alpha * x) ** 2)
    assert v.grad.item() == pytest.approx(expected, rel=1e-6)
    assert atan_spike(torch.tensor([x])).item() == (1.0 if x >= 0 else 0.0)
