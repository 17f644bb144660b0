"""The trainer and what the issue asked of the learner's core: bootstrapping at truncation only, what
each critic sees, the presets' advantage normalisation, the Polyak step, checkpoints that survive a
kill mid-save and refuse a bad optimizer file, and the offline -> online loop with versioned weights."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from apsconfig import load_config
from policies.checkpoint import CheckpointError, load_learner, read_card, save_checkpoint
from policies.episodes import Episode
from policies.learner import Learner, advantage_weights, batch_to_torch, normalized
from policies.networks import Critic, ObsSpec
from policies.replay import SequenceReplay
from policies.trainer import Trainer, TrainerConfig
from policies.weights import WeightsError, unpack_actor_weights
from sim.pretrain import PRESETS, PretrainConfig
from tests.test_learner import make_episode, small_config

pytestmark = pytest.mark.usefixtures("seeded_torch")


def last_transition_batch(episode: Episode) -> dict:
    """A window whose only trained step is the episode's last transition."""
    replay = SequenceReplay(seq_len=4, burn_in=3)
    batch = replay._window(episode, len(episode) - 1)
    return batch_to_torch(batch)


def test_truncation_bootstraps_and_termination_does_not(episodes: list[Episode]) -> None:
    """Q's target at the last step: r + gamma V(z_T) when time ran out, r alone when the task ended."""
    learner = Learner(ObsSpec.from_episode(episodes[0]), dataclasses.replace(small_config(), gamma=0.9))
    terminated = episodes[2]
    truncated = dataclasses.replace(
        terminated, terminated=np.zeros_like(terminated.terminated), truncated=terminated.terminated.copy()
    )
    for episode, bootstraps in ((terminated, False), (truncated, True)):
        data = last_transition_batch(episode)
        mask = data["mask"][0]
        (last,) = torch.nonzero(mask).flatten().tolist()
        torch.manual_seed(5)
        _, metrics = learner.losses(data)
        torch.manual_seed(5)  # the same DrQ shift as inside losses()
        z = learner.critic.features(
            data["onboard"], data["privileged"], learner.critic.initial_state(1), True
        )
        with torch.no_grad():
            next_value = learner.critic.value(z[:, last + 1])[0]
            q = learner.critic.q_values(z[:, last : last + 1], data["action"][:, last : last + 1])[:, 0, 0]
        reward = data["reward"][0, last]
        target = reward + (0.9 * next_value if bootstraps else 0.0)
        assert data["terminated"][0, last] == float(not bootstraps)
        assert metrics["losses/q"] == pytest.approx((q - target).pow(2).sum().item(), rel=1e-4)


@pytest.mark.parametrize(
    ("algorithm", "sees_onboard", "sees_privileged"),
    [("aawr", True, True), ("aawr-state", False, True), ("awr", True, False)],
)
def test_each_critic_sees_only_its_inputs(
    episodes: list[Episode], algorithm: str, sees_onboard: bool, sees_privileged: bool
) -> None:
    spec = ObsSpec.from_episode(episodes[0])
    critic = Critic(spec, small_config().network, algorithm)
    data = batch_to_torch(SequenceReplay(5, 3)._window(episodes[2], 4))
    onboard = data["onboard"]["trace"].requires_grad_(True)
    privileged = data["privileged"]["object_pos"].requires_grad_(True)
    z = critic.features(data["onboard"], data["privileged"], critic.initial_state(1))
    onboard_grad, privileged_grad = torch.autograd.grad(z.sum(), [onboard, privileged], allow_unused=True)
    for grad, sees in ((onboard_grad, sees_onboard), (privileged_grad, sees_privileged)):
        if sees:
            assert grad is not None and torch.count_nonzero(grad) > 0
        else:
            assert grad is None or torch.count_nonzero(grad) == 0


def test_the_presets_advantage_normalisation() -> None:
    """quick/full: A / max(std(A), floor), then exp(A / beta) clipped; a flat critic stays near BC."""
    learner = load_config(PretrainConfig, PRESETS / "quick.yaml").learner
    assert learner.normalize_advantages and (learner.beta, learner.max_weight) == (1.0, 20.0)
    mask = torch.ones(1, 4)
    advantage = torch.tensor([[-0.02, 0.0, 0.02, 0.08]])  # mean 0.02, std 0.0367
    std = float(np.std([-0.02, 0.0, 0.02, 0.08]))
    weights = advantage_weights(normalized(advantage, mask, learner.advantage_scale_floor), "exp", 1.0, 20.0)
    expected = np.minimum(np.exp(np.array([-0.02, 0.0, 0.02, 0.08]) / std), 20.0)
    np.testing.assert_allclose(weights.numpy()[0], expected, rtol=1e-5)
    flat = torch.tensor([[-1e-5, 0.0, 1e-5, 2e-5]])  # a critic that has learnt nothing yet
    flat_weights = advantage_weights(normalized(flat, mask, learner.advantage_scale_floor), "exp", 1.0, 20.0)
    assert torch.all((flat_weights > 0.97) & (flat_weights < 1.03))  # not blown up to exp(+-1.3)


def test_polyak_step_moves_the_target_by_tau(episodes: list[Episode]) -> None:
    config = dataclasses.replace(small_config(), target_tau=0.1)
    learner = Learner(ObsSpec.from_episode(episodes[0]), config)
    replay = SequenceReplay(5, 3)
    replay.extend(episodes)
    learner.update(replay.sample(4, np.random.default_rng(0)))  # targets and critics now differ
    before = [p.clone() for p in learner.target_critic.parameters()]
    learner.update(replay.sample(4, np.random.default_rng(1)))
    for old, target, online in zip(
        before, learner.target_critic.parameters(), learner.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(target, 0.9 * old + 0.1 * online, rtol=0, atol=1e-6)
    assert any(
        not torch.equal(old, new) for old, new in zip(before, learner.target_critic.parameters(), strict=True)
    )


# --- checkpoints -------------------------------------------------------------------------------------

SAVER = """
import sys, torch
sys.path.insert(0, {root!r})
from policies.checkpoint import save_checkpoint
from policies.learner import Learner
from policies.networks import ObsSpec
from tests.test_learner import small_config
import numpy as np
vector = np.zeros(3, np.float32)
image = np.zeros((12, 12, 3), np.uint8)
spec = ObsSpec.from_arrays({{"camera": image, "trace": vector}}, {{"object_pos": vector}}, 2)
learner = Learner(spec, small_config())
version = 0
while True:
    version += 1
    with torch.no_grad():  # every weight tells which version it belongs to
        for p in learner.actor.parameters():
            p.fill_(version)
    save_checkpoint(learner, {path!r}, "unit", version)
    print(version, flush=True)
"""


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path) -> None:
    path = tmp_path / "ckpt"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(6):
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVER.format(root=root, path=str(path))], stdout=subprocess.PIPE, text=True
        )
        first = saver.stdout.readline()  # at least one save of this process is complete
        assert first, "the saver died"
        time.sleep(float(rng.uniform(0.0, 0.3)))  # then kill it anywhere, most likely mid-save
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        learner, card = load_learner(path, task="unit")
        weights = torch.cat([p.flatten() for p in learner.actor.parameters()])
        assert torch.all(weights == card.version), "the weights are not the ones the card describes"
        assert card.version >= 1
        seen += 1
    assert seen == 6
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt"]
    assert all(name.startswith(".ckpt.") for name in leftovers)  # only hidden scratch folders remain


def test_a_missing_or_odd_optimizer_file_is_a_clear_error(tmp_path, episodes: list[Episode]) -> None:
    learner = Learner(ObsSpec.from_episode(episodes[0]), small_config())
    replay = SequenceReplay(5, 3)
    replay.extend(episodes)
    learner.update(replay.sample(4, np.random.default_rng(0)))
    save_checkpoint(learner, tmp_path / "c", "unit", 1)
    optimizer = tmp_path / "c" / "optimizer.safetensors"
    good = optimizer.read_bytes()
    optimizer.unlink()
    with pytest.raises(CheckpointError, match=r"no optimizer\.safetensors.*fresh_optimizer=True"):
        load_learner(tmp_path / "c")
    fresh, _ = load_learner(tmp_path / "c", fresh_optimizer=True)
    assert not fresh.actor_optim.state_dict()["state"]
    from safetensors.torch import load as load_bytes
    from safetensors.torch import save_file

    tensors = load_bytes(good)
    odd = {k: v for k, v in tensors.items() if not k.startswith("critic.0.")}  # one parameter's moments gone
    save_file(odd, optimizer)
    with pytest.raises(CheckpointError, match="optimizer state for critic covers"):
        load_learner(tmp_path / "c")
    save_file({**tensors, "actor.0.momentum": torch.zeros(1)}, optimizer)
    with pytest.raises(CheckpointError, match=r"unknown entry 'actor\.0\.momentum'"):
        load_learner(tmp_path / "c")
    first = next(k for k in tensors if k.startswith("actor.") and k.endswith("exp_avg"))
    save_file({**tensors, first: torch.zeros(2, 2, 2)}, optimizer)
    with pytest.raises(CheckpointError, match=r"moment .*exp_avg is \[2, 2, 2\]"):
        load_learner(tmp_path / "c")


# --- the trainer ------------------------------------------------------------------------------------


def trainer_config(algorithm: str = "aawr", **settings: object) -> TrainerConfig:
    return TrainerConfig(learner=small_config(algorithm), **settings)


def test_online_episodes_earn_updates_and_batches_mix_demos(episodes: list[Episode]) -> None:
    trainer = Trainer(ObsSpec.from_episode(episodes[0]), trainer_config(updates_per_step=0.5), episodes)
    assert len(list(trainer.train(3))) == 3 and trainer.owed_updates == 0
    batch = trainer.batch()
    assert np.all(batch.onboard["trace"][:, 0, 0] < 100)  # offline: demos only
    trainer.go_online()
    assert trainer.learner.weighting == "indicator"
    rng = np.random.default_rng(1)
    trainer.add_episode(make_episode(100, 9, rng, source="policy"))
    assert trainer.owed_updates == 4 and trainer.online_steps == 9  # 9 steps x 0.5, whole updates
    trainer.learner.config = dataclasses.replace(trainer.learner.config, batch_size=10)
    online = trainer.batch().onboard["trace"][:, 0, 0] >= 100
    assert online.sum() == 5  # demo_fraction 0.5
    list(trainer.train(trainer.owed_updates))
    assert trainer.owed_updates == 0 and trainer.updates == 7


def test_bc_keeps_to_the_demos_online(episodes: list[Episode]) -> None:
    trainer = Trainer(ObsSpec.from_episode(episodes[0]), trainer_config("bc"), episodes)
    trainer.go_online()
    trainer.add_episode(make_episode(100, 9, np.random.default_rng(1), source="policy"))
    assert np.all(trainer.batch().onboard["trace"][:, 0, 0] < 100)


def test_versions_rise_with_the_weights_and_reach_the_policy_node_checks(tmp_path, episodes) -> None:
    spec = ObsSpec.from_episode(episodes[0])
    trainer = Trainer(spec, trainer_config(), episodes)
    receiver = Learner(spec, trainer_config().learner).actor
    first = unpack_actor_weights(trainer.weights("unit"), receiver, "unit", current_version=0)
    again = unpack_actor_weights(trainer.weights("unit"), receiver, "unit", current_version=0)
    assert first.version == again.version == 1  # unchanged weights, the same version
    list(trainer.train(1))
    trainer.save(tmp_path / "ckpt", "unit")
    assert read_card(tmp_path / "ckpt").version == 2
    packet = trainer.weights("unit")
    received = unpack_actor_weights(packet, receiver, "unit", current_version=1)
    assert received.version == 2
    with pytest.raises(WeightsError, match="not newer"):
        unpack_actor_weights(packet, receiver, "unit", current_version=2)
    learner, card = load_learner(tmp_path / "ckpt")
    resumed = Trainer(spec, trainer_config(), episodes, learner=learner, version=card.version)
    assert resumed.current_version() == 2
    list(resumed.train(1))
    assert resumed.current_version() == 3  # a restarted learner keeps counting up


def test_the_policy_is_the_actors_moving_average_and_resumes_with_it(tmp_path, episodes) -> None:
    config = dataclasses.replace(small_config(), policy_ema=0.9)
    learner = Learner(ObsSpec.from_episode(episodes[0]), config)
    replay = SequenceReplay(5, 3)
    replay.extend(episodes)
    rng = np.random.default_rng(0)
    expected = [p.clone() for p in learner.policy.parameters()]
    for _ in range(3):
        learner.update(replay.sample(4, rng))
        expected = [0.9 * e + 0.1 * a for e, a in zip(expected, learner.actor.parameters(), strict=True)]
    pairs = list(zip(learner.policy.parameters(), learner.actor.parameters(), strict=True))
    for (average, _), wanted in zip(pairs, expected, strict=True):
        torch.testing.assert_close(average, wanted, rtol=0, atol=1e-6)
    assert any(not torch.equal(average, live) for average, live in pairs)
    save_checkpoint(learner, tmp_path / "c", "unit", 1)
    resumed, _ = load_learner(tmp_path / "c")
    batch = replay.sample(4, rng)
    for each in (learner, resumed):
        torch.manual_seed(3)
        each.update(batch)
    for ours, theirs in ((learner.policy, resumed.policy), (learner.actor, resumed.actor)):
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
            assert torch.equal(a, b)
