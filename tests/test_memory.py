"""Memory of the recurrent cores: the BMRU's parallel scan against its step-by-step recurrence and its
persistent bits, the BRC's bistability, the variability amongst attractors (VAA) and the warmup that
raises it, and a learner with a BMRU core through training, warmup and a checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sim
from policies.checkpoint import PolicyRunner, load_learner, load_policy
from policies.config import LearnerConfig, NetworkConfig
from policies.networks import BistableCore, BMRUCore, GRUCore, ObsSpec, SplitCore, make_core
from policies.trainer import Trainer, TrainerConfig
from policies.warmup import measure_vaa, vaa, vaa_star, warm_up
from sim.config import DemoConfig, TaskConfig

pytestmark = pytest.mark.usefixtures("seeded_torch")


def test_bmru_parallel_scan_equals_its_sequential_recurrence() -> None:
    """The whole-sequence scan, the recurrence h_t = a_t h_{t-1} + b_t stepped by hand, and the core fed
    one step at a time (as the policy runner feeds it) give the same states and the same gradients."""
    core = BMRUCore(6, 12)
    x = 2.0 * torch.randn(3, 257, 6)  # 257: the scan's last round covers a ragged tail
    h0 = torch.randint(-1, 2, (3, 12)).float()

    y, last = core(x, h0)
    a, b = core.step_maps(x)
    h, by_hand = h0, []
    for t in range(x.shape[1]):
        h = a[:, t] * h + b[:, t]
        by_hand.append(h)
    state, stepped = h0, []
    for t in range(x.shape[1]):
        y_t, state = core(x[:, t : t + 1], state)
        stepped.append(y_t)

    assert torch.allclose(y[..., :12], torch.stack(by_hand, dim=1), atol=1e-5)
    assert torch.allclose(y, torch.cat(stepped, dim=1), atol=1e-5)
    assert torch.allclose(last, state, atol=1e-5)
    assert set(y[..., :12].unique().tolist()) <= {-1.0, 0.0, 1.0}  # quantised states
    assert 0.1 < (y[:, 1:, :12] != y[:, :-1, :12]).float().mean() < 0.9  # it both switches and holds

    scan_grads = torch.autograd.grad(y.square().sum(), list(core.parameters()))
    step_grads = torch.autograd.grad(torch.cat(stepped, dim=1).square().sum(), list(core.parameters()))
    for scan_grad, step_grad in zip(scan_grads, step_grads, strict=True):
        assert torch.isfinite(scan_grad).all() and scan_grad.abs().sum() > 0
        assert torch.allclose(scan_grad, step_grad, atol=1e-4, rtol=1e-5)


def test_bmru_holds_its_state_over_a_thousand_steps_of_zero_input() -> None:
    """Bits set by a strong input stay exactly as set through 1030 steps of zero input, while a GRU
    forgets: its state after the zeros no longer depends on what it saw."""
    core, gru = BMRUCore(4, 16), GRUCore(4, 16)
    drive = 5.0 * torch.randn(8, 3, 4)
    zeros = torch.zeros(8, 1030, 4)
    with torch.no_grad():
        _, set_state = core(drive, core.initial_state(8))
        y, held = core(zeros, set_state)
        _, gru_seen = gru(drive, gru.initial_state(8))
        _, gru_after = gru(zeros, gru_seen)

    assert (set_state != 0).float().mean() > 0.5 and set_state.unique(dim=0).shape[0] > 1
    assert torch.equal(held, set_state)
    assert torch.equal(y[:, :, :16], set_state[:, None].expand(-1, 1030, -1))  # at every step
    assert gru_seen.std(dim=0).mean() > 0.05 and gru_after.std(dim=0).max() < 1e-4


def brc_cell(a: float) -> BistableCore:
    """One BRC neuron under a constant a and c = 0.5: h' = h/2 + tanh(a h)/2 at zero input."""
    cell = BistableCore(1, 1, neuromodulated=False)
    with torch.no_grad():
        cell.inputs.weight.zero_()
        cell.inputs.bias.copy_(torch.tensor([0.0, math.atanh(a - 1.0), 0.0]))  # c, a, h
        cell.memory_diag.zero_()
    return cell


@pytest.mark.parametrize("a", [1.5, 0.5])
def test_brc_with_a_above_one_has_two_stable_fixed_points(a: float) -> None:
    """From either side of 0, zero input takes a > 1 to two distinct states that map onto themselves and
    attract (slope of the map < 1 there); a < 1 takes both to the one fixed point 0."""
    cell = brc_cell(a)
    start = torch.tensor([[0.05], [-0.05], [0.9], [-0.9]])
    with torch.no_grad():
        _, final = cell(torch.zeros(4, 400, 1), start)
        _, again = cell(torch.zeros(4, 1, 1), final)
    h = final.squeeze(1)
    assert torch.allclose(again, final, atol=1e-6)  # fixed points
    if a > 1:
        star = h[0].item()
        assert star > 0.5 and torch.allclose(h, torch.tensor([star, -star, star, -star]), atol=1e-5)
        slope = 0.5 + 0.5 * a * (1.0 - star**2)  # d/dh of h/2 + tanh(a h)/2 at h*
        assert slope < 1.0
    else:
        assert h.abs().max() < 1e-5


def test_vaa_counts_distinct_attractors_and_its_relaxation_is_differentiable() -> None:
    distinct = torch.eye(6) * 3.0
    assert vaa(distinct) == 1.0
    assert vaa(torch.ones(6, 4)) == pytest.approx(1 / 6)
    clusters = torch.cat([torch.zeros(3, 4), torch.ones(3, 4)]) + 1e-6 * torch.randn(6, 4)
    assert vaa(clusters) == pytest.approx(2 / 6)

    assert vaa_star(distinct).item() == pytest.approx(1.0, abs=1e-3)
    assert vaa_star(torch.ones(6, 4)).item() == pytest.approx(1 / 6, abs=1e-3)
    states = torch.randn(6, 4, requires_grad=True)
    measure = vaa_star(0.01 * states)  # close states: far from saturation, the gradient is large
    (grad,) = torch.autograd.grad(measure, states)
    assert torch.isfinite(measure) and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_warmup_raises_a_grus_reachable_multistability() -> None:
    """A fresh GRU ends in one attractor (VAA 1/n) after the paper's 10,000 steps of a constant input;
    100 warmup steps (which see at most 200 steps) give it many that last that long."""
    core = GRUCore(8, 16)
    inputs = torch.tanh(torch.randn(32, 16, 8))
    before = measure_vaa(core, inputs)
    history = warm_up(core, inputs, steps=100, lr=LearnerConfig.warmup_lr)
    after = measure_vaa(core, inputs)
    assert before == pytest.approx(1 / 32)
    assert after > 0.5
    assert len(history) == 100 and all(math.isfinite(v) for v in history)


def test_partial_warmup_tunes_only_the_warmed_half_of_a_double_layer() -> None:
    core = make_core(8, NetworkConfig(core="gru", core_hidden=16, warmup_fraction=0.5))
    assert isinstance(core, SplitCore) and core.warmed.state_dim == core.cold.state_dim == 8
    cold = {k: v.clone() for k, v in core.cold.state_dict().items()}
    warmed = {k: v.clone() for k, v in core.warmed.state_dict().items()}
    warm_up(core, torch.tanh(torch.randn(16, 10, 8)), steps=5, lr=1e-2)
    assert all(torch.equal(v, core.cold.state_dict()[k]) for k, v in cold.items())
    assert any(not torch.equal(v, core.warmed.state_dict()[k]) for k, v in warmed.items())
    with pytest.raises(ValueError, match="without units"):
        NetworkConfig(core_hidden=16, warmup_fraction=0.01)
    with pytest.raises(ValueError, match="no recurrence"):
        LearnerConfig(network=NetworkConfig(core="framestack"), warmup_steps=10)


def test_learner_trains_with_bmru_warms_up_fresh_and_its_checkpoint_acts_alike(tmp_path) -> None:
    """A BMRU learner on T-maze demos: warmed up when built fresh (not when loaded), a few finite
    updates, and the saved policy acts as the live one, step by step, on a whole episode."""
    demos = sim.collect_demos(
        "tmaze",
        6,
        seed=0,
        task_config=TaskConfig(max_episode_steps=20),
        demo_config=DemoConfig(wrong_direction_prob=0.5),
    )
    spec = ObsSpec.from_episode(demos[0])
    network = NetworkConfig(core="bmru", core_hidden=16, head_hidden=32, vector_hidden=16)
    learner_config = LearnerConfig(network=network, batch_size=8, seq_len=6, burn_in=6, warmup_steps=5)
    trainer = Trainer(spec, TrainerConfig(learner=learner_config), demos, seed=0)
    tags = {f"warmup/{network}_vaa_{when}" for network in ("actor", "critic") for when in ("before", "after")}
    assert set(trainer.warmup_metrics) == tags
    losses = [v for metrics in trainer.train(4) for k, v in metrics.items() if k.startswith("losses/")]
    assert len(losses) == 4 * 3 and all(np.isfinite(losses))

    trainer.save(tmp_path / "ckpt", "tmaze")
    loaded, _ = load_learner(tmp_path / "ckpt", "tmaze")
    assert not Trainer(spec, TrainerConfig(learner=learner_config), demos, learner=loaded).warmup_metrics
    live = PolicyRunner.from_learner(trainer.learner, "tmaze", sampling="mode")
    saved = load_policy(tmp_path / "ckpt", "tmaze", sampling="mode")
    live.reset()
    saved.reset()
    for t in range(len(demos[0]) + 1):
        onboard = {k: v[t] for k, v in demos[0].onboard.items()}
        assert np.array_equal(live.act(onboard), saved.act(onboard))
    assert torch.equal(live.state, saved.state)

    with pytest.raises(RuntimeError, match="fresh learner"):
        trainer.learner.warm_up(trainer.batch())
