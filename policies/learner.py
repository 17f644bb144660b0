"""AAWR, AAWR-state, AWR and BC in one code path: they differ only in what the critic sees.

For a window of onboard observations o, privileged signals i and actions a (see policies.replay):

    z_t      = critic features: [h_t, i_t] (aawr), i_t (aawr-state), h_t (awr); h_t = RNN(o_0..t)
    V loss   = E[ |tau - 1(u < 0)| u^2 ],  u = min_k Q'_k(z_t, a_t) - V(z_t)     (expectile regression)
    Q loss   = E[ sum_k (r_t + gamma (1 - d_t) V(z_{t+1}) - Q_k(z_t, a_t))^2 ]  (TD onto V of the next step)
    A_t      = min_k Q'_k(z_t, a_t) - V(z_t)                                    (Q' = Polyak target critic)
    w_t      = min(exp(A_t / beta), max_weight)   or   1[A_t > 0]              (BC: w_t = 1)
               (A_t / max(std(A), floor) over the batch in place of A_t, with `normalize_advantages`)
    pi loss  = -E[ w_t log pi(a_t | o_0..t) ]                                   (the actor sees onboard only)

Logged per update (tags grouped by kind, as CleanRL and robomimic group them): losses/*, critic/*,
advantage/* (raw, before normalisation) and weights/*, with weights/ess the effective sample size
(sum w)^2 / (N sum w^2) of the actor's weights: near 1 every step counts, near 0 a few steps rule.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from policies.config import LearnerConfig, Weighting
from policies.networks import Actor, Critic, HistoryEncoder, ObsSpec
from policies.replay import SequenceBatch
from policies.warmup import warm_up_history


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or inf; the update was not applied."""


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def expectile_loss(u: Tensor, tau: float) -> Tensor:
    """|tau - 1(u < 0)| u^2, elementwise: tau > 0.5 fits an upper expectile of Q under the data's actions."""
    return torch.abs(tau - (u < 0).float()) * u.pow(2)


def advantage_weights(advantage: Tensor, weighting: Weighting, beta: float, max_weight: float) -> Tensor:
    if weighting == "indicator":
        return (advantage > 0).float()
    return torch.exp(advantage / beta).clamp(max=max_weight)


def masked_std(x: Tensor, mask: Tensor) -> Tensor:
    return masked_mean((x - masked_mean(x, mask)).pow(2), mask).sqrt()


def normalized(advantage: Tensor, mask: Tensor, floor: float) -> Tensor:
    """A / max(std(A), floor) over the trained steps of the batch (the sign, hence 1[A > 0], is
    unchanged). The floor keeps a flat critic's noise from being blown up into large weights. With
    fewer than two trained steps there is no spread to measure: A is returned as it is."""
    if mask.sum() < 2:
        return advantage
    return advantage / masked_std(advantage, mask).clamp(min=floor)


def effective_sample_size(weights: Tensor, mask: Tensor) -> Tensor:
    """(sum w)^2 / (N sum w^2) over the trained steps, in (0, 1]."""
    w = weights * mask
    return w.sum().pow(2) / (mask.sum() * w.pow(2).sum()).clamp(min=1e-12)


def batch_to_torch(batch: SequenceBatch, device: torch.device | str = "cpu") -> dict:
    """Images stay uint8 (the encoders scale them); everything else becomes float32."""

    def tensor(x: np.ndarray) -> Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x))
        return t.to(device) if t.dtype == torch.uint8 else t.to(device, torch.float32)

    return {
        "onboard": {k: tensor(v) for k, v in batch.onboard.items()},
        "privileged": {k: tensor(v) for k, v in batch.privileged.items()},
        "action": tensor(batch.action),
        "reward": tensor(batch.reward),
        "terminated": tensor(batch.terminated),
        "mask": tensor(batch.mask),
    }


class Learner:
    """Networks, optimizers and one update. Initial weights come from torch's global generator: seed
    it in the entry point (a node that builds a learner must not reseed its process)."""

    def __init__(self, spec: ObsSpec, config: LearnerConfig, device: torch.device | str = "cpu") -> None:
        self.spec, self.config = spec, config
        self.device = torch.device(device)
        self.weighting: Weighting = config.weighting
        self.actor = Actor(spec, config.network).to(self.device)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        # The policy that acts (evaluation, exploration, deployment): the actor, or its moving average.
        self.policy = copy.deepcopy(self.actor).requires_grad_(False) if config.policy_ema else self.actor
        self.critic: Critic | None = None
        if config.uses_critic:
            self.critic = Critic(spec, config.network, config.algorithm, config.critic_privileged_keys)
            self.critic.to(self.device)
            self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
            self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.updates = 0

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optim} | ({"critic": self.critic_optim} if self.critic else {})

    def go_online(self) -> None:
        """Offline -> online: switch the weighting as configured (the paper uses 1[A > 0] online)."""
        self.weighting = self.config.online_weighting

    def losses(self, data: dict) -> tuple[dict[str, Tensor], dict[str, float]]:
        """The losses of one batch (from `batch_to_torch`), before any parameter changes."""
        cfg = self.config
        onboard, privileged = data["onboard"], data["privileged"]
        action, reward, done, mask = data["action"], data["reward"], data["terminated"], data["mask"]
        size = action.shape[0]
        losses: dict[str, Tensor] = {}
        metrics: dict[str, float] = {}

        if self.critic is None:  # BC: unit weights
            weights = torch.ones_like(mask)
        else:
            state = self.critic.initial_state(size).to(self.device)
            z = self.critic.features(onboard, privileged, state, augment=True)
            with torch.no_grad():
                z_target = self.target_critic.features(onboard, privileged, state)
                q_target = self.target_critic.q_values(z_target[:, :-1], action).min(dim=0).values
            value = self.critic.value(z[:, :-1])
            next_value = self.critic.value(z[:, 1:]).detach()

            value_loss = masked_mean(expectile_loss(q_target - value, cfg.expectile), mask)
            td_target = reward + cfg.gamma * (1.0 - done) * next_value
            q = self.critic.q_values(z[:, :-1], action)
            q_loss = masked_mean((q - td_target).pow(2).sum(dim=0), mask)
            losses["critic"] = value_loss + q_loss

            advantage = (q_target - value).detach()
            metrics.update({
                "losses/value": value_loss.item(),
                "losses/q": q_loss.item(),
                "critic/q_mean": masked_mean(q_target, mask).item(),
                "critic/v_mean": masked_mean(value.detach(), mask).item(),
                "advantage/mean": masked_mean(advantage, mask).item(),  # raw, before any normalisation
                "advantage/std": masked_std(advantage, mask).item(),
                "advantage/positive": masked_mean((advantage > 0).float(), mask).item(),
            })  # fmt: skip
            if cfg.normalize_advantages:
                advantage = normalized(advantage, mask, cfg.advantage_scale_floor)
            weights = advantage_weights(advantage, self.weighting, cfg.beta, cfg.max_weight)

        # The actor gets the onboard part only; the privileged signal reaches it solely through the
        # (detached) weights.
        acting_steps = {k: v[:, :-1] for k, v in onboard.items()}  # the last observation has no action
        dist, _ = self.actor(acting_steps, self.actor.initial_state(size).to(self.device), augment=True)
        log_prob = dist.log_prob(action)
        losses["actor"] = -masked_mean(weights * log_prob, mask)
        metrics.update({
            "losses/actor": losses["actor"].item(),
            "weights/mean": masked_mean(weights, mask).item(),
            "weights/max": (weights * mask).max().item(),
            "weights/ess": effective_sample_size(weights, mask).item(),
        })  # fmt: skip
        return losses, metrics

    def warm_up(self, batch: SequenceBatch) -> dict[str, float]:
        """The warmup of `config.warmup_steps` (policies.warmup) on the actor's core and the critic's
        history core, fed the encoded onboard windows of `batch` (demos). Call it on a fresh learner,
        before any update: the moving-average policy and the target critic restart from the result.
        Returns the VAA of each core before and after (warmup/<network>_vaa_before, _after)."""
        if self.updates:
            raise RuntimeError(f"warmup is for a fresh learner; this one has {self.updates} updates")
        onboard = batch_to_torch(batch, self.device)["onboard"]
        histories: dict[str, HistoryEncoder] = {"actor": self.actor.history}
        if self.critic is not None and self.critic.history is not None:
            histories["critic"] = self.critic.history
        metrics = {}
        for name, history in histories.items():
            result = warm_up_history(history, onboard, self.config.warmup_steps, self.config.warmup_lr)
            metrics[f"warmup/{name}_vaa_before"] = result.vaa_before
            metrics[f"warmup/{name}_vaa_after"] = result.vaa_after
        if self.policy is not self.actor:
            self.policy.load_state_dict(self.actor.state_dict())
        if self.critic is not None:
            self.target_critic.load_state_dict(self.critic.state_dict())
        return metrics

    def update(self, batch: SequenceBatch) -> dict[str, float]:
        losses, metrics = self.losses(batch_to_torch(batch, self.device))
        bad = [name for name, loss in losses.items() if not torch.isfinite(loss)]
        if bad:
            raise NonFiniteLossError(
                f"non-finite {', '.join(bad)} loss at update {self.updates}; update skipped"
            )

        self._step(self.actor_optim, self.actor, losses["actor"])
        if self.policy is not self.actor:
            with torch.no_grad():  # policy <- ema policy + (1 - ema) actor
                for averaged, live in zip(self.policy.parameters(), self.actor.parameters(), strict=True):
                    averaged.lerp_(live, 1.0 - self.config.policy_ema)
        if self.critic is not None:
            self._step(self.critic_optim, self.critic, losses["critic"])
            with torch.no_grad():  # Polyak: theta' <- (1 - tau) theta' + tau theta
                for target, online in zip(
                    self.target_critic.parameters(), self.critic.parameters(), strict=True
                ):
                    target.lerp_(online, self.config.target_tau)
        self.updates += 1
        return metrics

    def _step(self, optimizer: torch.optim.Optimizer, module: torch.nn.Module, loss: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), self.config.grad_clip)
        optimizer.step()
