"""The learner's parts: losses, the onboard-only actor, recurrent cores, replay, checkpoints, bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from apsconfig import ConfigError, load_config
from policies.checkpoint import CheckpointError, load_learner, load_policy, save_checkpoint
from policies.config import LearnerConfig, NetworkConfig
from policies.episodes import Episode
from policies.learner import (
    Learner,
    NonFiniteLossError,
    advantage_weights,
    batch_to_torch,
    expectile_loss,
    masked_mean,
    normalized,
)
from policies.networks import Actor, Critic, ObsSpec, make_core
from policies.replay import SequenceReplay, sample_mixed

IMAGE = 12


def make_episode(index: int, steps: int, rng: np.random.Generator, source: str = "demo") -> Episode:
    """An episode whose onboard vector records (episode index, step), to trace what a sampler cuts."""
    t = np.arange(steps + 1, dtype=np.float32)
    return Episode(
        onboard={
            "camera": rng.integers(0, 255, (steps + 1, IMAGE, IMAGE, 3), dtype=np.uint8),
            "trace": np.stack([np.full(steps + 1, index, np.float32), t], axis=1),
        },
        privileged={"object_pos": rng.normal(size=(steps + 1, 3)).astype(np.float32)},
        action=rng.uniform(-1, 1, (steps, 2)).astype(np.float32),
        reward=(np.arange(steps) == steps - 1).astype(np.float32),
        terminated=(np.arange(steps) == steps - 1),
        truncated=np.zeros(steps, dtype=bool),
        timestamp=t.astype(np.float64) / 10.0,
        attrs={"task": "unit", "success": True, "source": source},
    )


def small_config(algorithm: str = "aawr", core: str = "gru") -> LearnerConfig:
    network = NetworkConfig(
        image_channels=(8, 8), image_features=16, vector_hidden=16, core=core, core_hidden=16, head_hidden=32
    )
    return LearnerConfig(algorithm=algorithm, network=network, batch_size=4, seq_len=5, burn_in=3)


pytestmark = pytest.mark.usefixtures("seeded_torch")


# --- losses against hand-computed values ---------------------------------------------------------


def test_expectile_loss_weights_positive_errors_by_tau() -> None:
    u = torch.tensor([2.0, -2.0, 0.5])
    # |0.8 - 0| * 4 = 3.2, |0.8 - 1| * 4 = 0.8, 0.8 * 0.25 = 0.2
    assert torch.allclose(expectile_loss(u, 0.8), torch.tensor([3.2, 0.8, 0.2]))


def test_advantage_weights_exp_clipped_and_indicator() -> None:
    a = torch.tensor([-1.0, 0.0, 0.3, 10.0])
    exp = advantage_weights(a, "exp", beta=0.5, max_weight=100.0)
    assert torch.allclose(exp, torch.tensor([np.exp(-2.0), 1.0, np.exp(0.6), 100.0], dtype=torch.float32))
    assert torch.equal(advantage_weights(a, "indicator", 0.5, 100.0), torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_advantages_are_normalised_by_their_std_over_trained_steps() -> None:
    advantage = torch.tensor([[4.0, 0.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    # trained steps 4 and 0: mean 2, std 2; the sign (and so 1[A > 0]) is kept
    expected = torch.tensor([[2.0, 0.0, 50.0]])
    assert torch.allclose(normalized(advantage, mask, floor=1e-3), expected, atol=1e-5)
    # one trained step has no spread: left as it is rather than blown up by a zero std
    one = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.equal(normalized(advantage, one, floor=1e-3), advantage)


def test_masked_mean_ignores_masked_entries() -> None:
    x = torch.tensor([[1.0, 2.0, 100.0]])
    assert masked_mean(x, torch.tensor([[1.0, 1.0, 0.0]])).item() == pytest.approx(1.5)


def test_critic_losses_match_hand_computation(episodes: list[Episode]) -> None:
    """Recompute V, Q and actor losses of one batch from the networks' raw outputs."""
    learner = Learner(ObsSpec.from_episode(episodes[0]), dataclasses.replace(small_config(), gamma=0.9))
    replay = SequenceReplay(5, 3)
    replay.extend(episodes)
    data = batch_to_torch(replay.sample(4, np.random.default_rng(2)))
    for module in (learner.critic, learner.target_critic, learner.actor):
        for enc in module.modules():
            if hasattr(enc, "drq_pad"):
                enc.drq_pad = 0  # no random augmentation, so both computations see the same input
    losses, metrics = learner.losses(data)

    with torch.no_grad():
        size = data["action"].shape[0]
        z = learner.critic.features(data["onboard"], data["privileged"], learner.critic.initial_state(size))
        zt = learner.target_critic.features(
            data["onboard"], data["privileged"], learner.critic.initial_state(size)
        )
        mask = data["mask"]
        q_target = torch.minimum(*learner.target_critic.q_values(zt[:, :-1], data["action"]))
        v = learner.critic.value(z[:, :-1])
        u = q_target - v
        v_loss = ((0.8 * (u >= 0) + 0.2 * (u < 0)) * u**2 * mask).sum() / mask.sum()
        y = data["reward"] + 0.9 * (1 - data["terminated"]) * learner.critic.value(z[:, 1:])
        q = learner.critic.q_values(z[:, :-1], data["action"])
        q_loss = (((q[0] - y) ** 2 + (q[1] - y) ** 2) * mask).sum() / mask.sum()
        w = torch.exp(u / 0.3).clamp(max=100.0)
        onboard = {k: v[:, :-1] for k, v in data["onboard"].items()}
        dist, _ = learner.actor(onboard, learner.actor.initial_state(size))
        actor_loss = -(w * dist.log_prob(data["action"]) * mask).sum() / mask.sum()
    assert metrics["losses/value"] == pytest.approx(v_loss.item(), rel=1e-5)
    assert metrics["losses/q"] == pytest.approx(q_loss.item(), rel=1e-5)
    assert losses["critic"].item() == pytest.approx((v_loss + q_loss).item(), rel=1e-5)
    assert losses["actor"].item() == pytest.approx(actor_loss.item(), rel=1e-5)


# --- the actor never sees privileged data --------------------------------------------------------


def test_actor_loss_ignores_privileged_values_when_the_weights_are_fixed(episodes: list[Episode]) -> None:
    """BC's weights are 1: its actor loss may move with onboard inputs only, never privileged ones."""
    learner = Learner(ObsSpec.from_episode(episodes[0]), small_config("bc"))
    replay = SequenceReplay(5, 3)
    replay.extend(episodes)
    data = batch_to_torch(replay.sample(4, np.random.default_rng(0)))

    def actor_loss(batch: dict) -> float:
        torch.manual_seed(1)  # the same DrQ shifts every time
        return learner.losses(batch)[0]["actor"].item()

    reference = actor_loss(data)
    noisy_privileged = {
        **data,
        "privileged": {"object_pos": torch.randn_like(data["privileged"]["object_pos"])},
    }
    assert actor_loss(noisy_privileged) == reference
    noisy_onboard = {
        **data,
        "onboard": {**data["onboard"], "trace": torch.randn_like(data["onboard"]["trace"])},
    }
    assert actor_loss(noisy_onboard) != reference  # the check can fail


def test_no_gradient_from_privileged_into_the_actor(episodes: list[Episode]) -> None:
    learner = Learner(ObsSpec.from_episode(episodes[0]), small_config("aawr"))
    replay = SequenceReplay(5, 3)
    replay.extend(episodes)
    data = batch_to_torch(replay.sample(4, np.random.default_rng(0)))
    privileged = data["privileged"]["object_pos"].requires_grad_(True)
    losses, _ = learner.losses(data)
    (actor_grad,) = torch.autograd.grad(losses["actor"], privileged, allow_unused=True)
    (critic_grad,) = torch.autograd.grad(losses["critic"], privileged, allow_unused=True)
    assert actor_grad is None or torch.count_nonzero(actor_grad) == 0
    assert critic_grad is not None and torch.count_nonzero(critic_grad) > 0  # the check can fail


def test_critic_sees_only_the_chosen_privileged_keys() -> None:
    vector = np.zeros(2, np.float32)
    spec = ObsSpec.from_arrays({"joints": vector}, {"goal": vector, "belief": vector}, action_dim=2)
    critic = Critic(spec, small_config().network, "aawr", privileged_keys=["belief"])
    onboard = {"joints": torch.randn(3, 4, 2)}
    belief, goal = torch.randn(3, 4, 2, requires_grad=True), torch.randn(3, 4, 2, requires_grad=True)
    z = critic.features(onboard, {"goal": goal, "belief": belief}, critic.initial_state(3))
    (belief_grad, goal_grad) = torch.autograd.grad(z.sum(), [belief, goal], allow_unused=True)
    assert goal_grad is None and torch.count_nonzero(belief_grad) > 0
    with pytest.raises(ValueError, match=r"critic privileged keys \['object'\] are not in"):
        Critic(spec, small_config().network, "aawr", privileged_keys=["object"])
    with pytest.raises(ValueError, match="at least one key"):
        LearnerConfig(critic_privileged_keys=[])


def test_actor_rejects_privileged_keys(episodes: list[Episode]) -> None:
    actor = Actor(ObsSpec.from_episode(episodes[0]), small_config().network)
    ep = episodes[1]
    obs = {k: torch.from_numpy(v[None, :2]) for k, v in ep.onboard.items()}
    obs["object_pos"] = torch.from_numpy(ep.privileged["object_pos"][None, :2])
    with pytest.raises(KeyError, match="expected observation keys"):
        actor(obs, actor.initial_state(1))


# --- recurrent cores and hidden state --------------------------------------------------------------


@pytest.mark.parametrize("core", ["gru", "lstm", "brc", "nbrc", "framestack"])
def test_core_sequence_equals_step_by_step(core: str) -> None:
    torch.manual_seed(0)
    network = dataclasses.replace(small_config().network, core=core)
    module = make_core(6, network)
    x = torch.randn(3, 7, 6)
    whole, final = module(x, module.initial_state(3))
    state, steps = module.initial_state(3), []
    for t in range(7):
        y, state = module(x[:, t : t + 1], state)
        steps.append(y)
    assert torch.allclose(whole, torch.cat(steps, dim=1), atol=1e-5)
    assert torch.allclose(final, state, atol=1e-5)
    assert not torch.allclose(whole[:, 0], whole[:, -1])  # the output does change over time


def test_runner_reset_forgets_the_previous_episode(tmp_path, episodes: list[Episode]) -> None:
    learner = Learner(ObsSpec.from_episode(episodes[0]), small_config())
    save_checkpoint(learner, tmp_path / "ckpt", task="unit", version=1)
    runner = load_policy(tmp_path / "ckpt", sampling="mode")  # no draws: only the state differs

    def run(episode: Episode) -> np.ndarray:
        runner.reset()
        return np.stack(
            [runner.act({k: v[t] for k, v in episode.onboard.items()}) for t in range(len(episode))]
        )

    fresh = run(episodes[1])
    run(episodes[2])
    assert np.array_equal(run(episodes[1]), fresh)
    # Without a reset the state carries over and the same inputs give other actions.
    carried = np.stack([runner.act({k: v[t] for k, v in episodes[1].onboard.items()}) for t in range(9)])
    assert not np.allclose(carried, fresh)


# --- replay ------------------------------------------------------------------------------------------


def test_sampler_never_crosses_an_episode(episodes: list[Episode]) -> None:
    replay = SequenceReplay(seq_len=5, burn_in=3)
    replay.extend(episodes)
    batch = replay.sample(500, np.random.default_rng(0))
    trace = batch.onboard["trace"]  # [B, W+1, 2]: (episode, step)
    for b in range(len(batch)):
        episode = episodes[batch.episode[b]]
        assert np.all(trace[b, :, 0] == batch.episode[b])  # one episode per window, padding included
        steps = trace[b, :, 1]
        valid = steps[:-1] < len(episode)
        assert np.all(np.diff(steps)[valid] == 1)  # contiguous in time until the end
        trained = batch.mask[b] > 0
        assert trained.any() and np.all(steps[:-1][trained] < len(episode))
        assert np.array_equal(batch.action[b][trained], episode.action[steps[:-1][trained].astype(int)])
    # Every transition is trained by some window, the first step of each episode and its last included.
    trained_steps = {
        (int(e), int(step))
        for e, steps, mask in zip(batch.episode, trace[:, :-1, 1], batch.mask, strict=True)
        for step in steps[mask > 0]
    }
    for index, episode in enumerate(episodes):
        assert {(index, 0), (index, len(episode) - 1)} <= trained_steps, index
        assert {step for e, step in trained_steps if e == index} == set(range(len(episode)))


def test_sample_mixed_takes_the_demo_fraction(episodes: list[Episode]) -> None:
    rng = np.random.default_rng(0)
    demos, online = SequenceReplay(5, 3), SequenceReplay(5, 3)
    demos.extend(episodes)
    online.extend([make_episode(100 + i, 12, rng, source="policy") for i in range(3)])
    batch = sample_mixed(demos, online, 10, 0.5, rng)
    from_online = batch.onboard["trace"][:, 0, 0] >= 100
    assert from_online.sum() == 5


# --- checkpoints ------------------------------------------------------------------------------------


def test_checkpoint_round_trip_gives_identical_actions(tmp_path, episodes: list[Episode]) -> None:
    learner = Learner(ObsSpec.from_episode(episodes[0]), small_config())
    replay = SequenceReplay(5, 3)
    replay.extend(episodes)
    learner.update(replay.sample(4, np.random.default_rng(0)))
    save_checkpoint(learner, tmp_path / "a", task="unit", version=7)
    restored, card = load_learner(tmp_path / "a", task="unit")
    assert card.version == 7 and restored.updates == 1
    for a, b in zip(learner.critic.state_dict().values(), restored.critic.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    original = load_policy(tmp_path / "a")
    original.actor.load_state_dict(learner.actor.state_dict())
    loaded = load_policy(tmp_path / "a")
    ep = episodes[2]
    original.reset(), loaded.reset()
    for t in range(len(ep)):
        obs = {k: v[t] for k, v in ep.onboard.items()}
        assert np.array_equal(original.act(obs), loaded.act(obs))


@pytest.mark.parametrize("algorithm", ["aawr", "bc"])
def test_training_resumed_from_a_checkpoint_continues_exactly(tmp_path, episodes, algorithm: str) -> None:
    """Weights, target critic, Adam moments and the online weighting all come back: the next
    update of the resumed learner equals the next update of the one that never stopped."""
    learner = Learner(ObsSpec.from_episode(episodes[0]), small_config(algorithm))
    replay = SequenceReplay(5, 3)
    replay.extend(episodes)
    rng = np.random.default_rng(0)
    for _ in range(3):
        learner.update(replay.sample(4, rng))
    learner.go_online()
    save_checkpoint(learner, tmp_path / "a", task="unit", version=1)
    resumed, _ = load_learner(tmp_path / "a")
    assert resumed.weighting == learner.weighting == "indicator" and resumed.updates == 3
    batch = replay.sample(4, rng)
    for each in (learner, resumed):
        torch.manual_seed(11)  # the same DrQ shifts for both
        each.update(batch)
    pairs = [(learner.actor, resumed.actor)]
    if algorithm != "bc":
        pairs += [(learner.critic, resumed.critic), (learner.target_critic, resumed.target_critic)]
    for ours, theirs in pairs:
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
            assert torch.equal(a, b)


def test_checkpoint_from_another_task_or_damaged_is_refused(tmp_path, episodes: list[Episode]) -> None:
    learner = Learner(ObsSpec.from_episode(episodes[0]), small_config("bc"))
    save_checkpoint(learner, tmp_path / "c", task="search-pick", version=1)
    with pytest.raises(CheckpointError, match="trained on task 'search-pick', not 'tmaze'"):
        load_policy(tmp_path / "c", task="tmaze")
    (tmp_path / "c" / "policy.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="unreadable weights"):
        load_policy(tmp_path / "c")
    card = json.loads((tmp_path / "c" / "checkpoint.json").read_text())
    card["spec"]["action_dim"] = 5
    (tmp_path / "c" / "checkpoint.json").write_text(json.dumps(card))
    save_checkpoint(Learner(ObsSpec.from_episode(episodes[0]), small_config("bc")), tmp_path / "d", "t", 1)
    (tmp_path / "d" / "checkpoint.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_policy(tmp_path / "d")
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        load_policy(tmp_path / "missing")
    (tmp_path / "d" / "checkpoint.json").write_text("[]")
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        load_policy(tmp_path / "d")


def test_runner_rejects_bad_observations(tmp_path, episodes: list[Episode]) -> None:
    save_checkpoint(Learner(ObsSpec.from_episode(episodes[0]), small_config("bc")), tmp_path / "c", "unit", 1)
    runner = load_policy(tmp_path / "c")
    runner.reset()
    good = {k: v[0] for k, v in episodes[0].onboard.items()}
    with pytest.raises(ValueError, match="uint8"):
        runner.act({**good, "camera": good["camera"].astype(np.float32)})
    with pytest.raises(ValueError, match="NaN"):
        runner.act({**good, "trace": np.array([np.nan, 0.0], np.float32)})
    with pytest.raises(ValueError, match="do not match"):
        runner.act({**good, "object_pos": np.zeros(3, np.float32)})
    assert runner.act(good).shape == (2,)


# --- bad input ---------------------------------------------------------------------------------------


def test_nan_loss_raises_and_leaves_weights_untouched(episodes: list[Episode]) -> None:
    learner = Learner(ObsSpec.from_episode(episodes[0]), small_config())
    replay = SequenceReplay(5, 3)
    replay.extend(episodes)
    batch = replay.sample(4, np.random.default_rng(0))
    batch.reward[:] = np.nan
    before = [p.clone() for p in learner.critic.parameters()] + [
        p.clone() for p in learner.actor.parameters()
    ]
    with pytest.raises(NonFiniteLossError, match="non-finite critic"):
        learner.update(batch)
    after = list(learner.critic.parameters()) + list(learner.actor.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_malformed_learner_config_is_a_clear_error(tmp_path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("algorithm: [aawr\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(LearnerConfig, bad_yaml)
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(LearnerConfig, {"algorithmm": "aawr"})
    with pytest.raises(ConfigError, match="not one of"):
        load_config(LearnerConfig, {"algorithm": "ppo"})
    with pytest.raises(ConfigError, match="expectile"):
        load_config(LearnerConfig, {"expectile": 1.5})
    with pytest.raises(ConfigError, match=r"network\.core"):
        load_config(LearnerConfig, None, ["network.core=transformer"])
    assert load_config(LearnerConfig, None, ["network.core=lstm", "beta=1"]).network.core == "lstm"


def test_mixture_policy_acts_by_mode_component_or_full_sample() -> None:
    from policies.networks import ActionMixture

    logits = torch.tensor([[0.0, 2.0, -1.0]]).expand(4000, 3)
    means = torch.tensor([[0.9, 0.9], [-0.5, 0.2], [0.0, 0.0]]).expand(4000, 3, 2)
    components = torch.distributions.Independent(
        torch.distributions.Normal(means, torch.full_like(means, 0.1)), 1
    )
    mixture = ActionMixture(torch.distributions.Categorical(logits=logits), components)
    generator = torch.Generator().manual_seed(0)
    assert torch.allclose(mixture.act("mode"), torch.tensor([-0.5, 0.2]).expand(4000, 2))
    # The mixture's mean lies between the modes: an action no demo took.
    assert not torch.allclose(mixture.mean[0], torch.tensor([-0.5, 0.2]))

    # component: every action is exactly one component's mean, drawn with the mixture's probabilities
    drawn = mixture.act("component", generator)
    hits = (drawn[:, None, :] == means[0][None]).all(-1)  # [N, K]
    assert torch.all(hits.sum(-1) == 1)
    assert torch.allclose(hits.float().mean(0), torch.softmax(logits[0], -1), atol=0.03)

    # full: component means plus each component's noise
    full = mixture.act("full", torch.Generator().manual_seed(0))
    assert torch.allclose(full.mean(0), mixture.mean[0], atol=0.05)
    nearest = (full[:, None, :] - means[0][None]).norm(dim=-1).min(-1).values
    assert 0.05 < nearest.mean() < 0.2  # about the components' std of 0.1

    # the same seed draws the same actions
    again = mixture.act("component", torch.Generator().manual_seed(0))
    assert torch.equal(again, drawn)


def test_sampler_trains_every_step_equally_often(episodes: list[Episode]) -> None:
    replay = SequenceReplay(seq_len=5, burn_in=3)
    replay.extend(episodes)
    batch = replay.sample(20000, np.random.default_rng(1))
    counts = {i: np.zeros(len(e)) for i, e in enumerate(episodes)}
    for b in range(len(batch)):
        steps = batch.onboard["trace"][b, :-1, 1].astype(int)
        np.add.at(counts[batch.episode[b]], steps[batch.mask[b] > 0], 1)
    coverage = np.concatenate(list(counts.values()))
    assert coverage.min() > 0.9 * coverage.mean() and coverage.max() < 1.1 * coverage.mean()


def test_replay_refuses_an_episode_of_another_shape(episodes: list[Episode]) -> None:
    replay = SequenceReplay(5, 3)
    replay.add(episodes[0])
    other = make_episode(9, 4, np.random.default_rng(0))
    other.onboard["camera"] = np.zeros((5, IMAGE + 2, IMAGE, 3), np.uint8)
    with pytest.raises(ValueError, match="onboard/camera"):
        replay.add(other)
