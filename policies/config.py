"""Typed configs of the networks and the learner (loaded through `apsconfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# gru, lstm; brc, nbrc: the bistable cells of Vecoven et al. 2021; bmru: a bistable memory recurrent
# unit, trained by a parallel scan (see policies.networks.BMRUCore); framestack: no recurrence
CoreType = Literal["gru", "lstm", "brc", "nbrc", "bmru", "framestack"]
Algorithm = Literal["aawr", "aawr-state", "awr", "bc"]
Weighting = Literal["exp", "indicator"]
ActionSampling = Literal["mode", "component", "full"]  # how a policy picks its action: see ActionMixture.act


@dataclass
class NetworkConfig:
    image_channels: tuple[int, ...] = (16, 32, 32)  # conv widths; the first conv has stride 2
    image_features: int = 64  # per image key, after the conv stack
    vector_hidden: int = 64  # width of the MLP over all vector keys of one part
    core: CoreType = "gru"  # the agent state: a recurrent core over the history, or a frame stack
    core_hidden: int = 128  # width of the recurrent state (or of the frame-stack MLP)
    framestack: int = 4  # frames kept by the "framestack" core (the non-recurrent baseline)
    head_hidden: int = 128  # width of the policy, Q and V heads (two hidden layers each)
    policy_modes: int = 5  # Gaussian mixture components of the policy (1: a plain Gaussian)
    critic_ensemble: int = 2  # Q heads; targets and advantages take their minimum
    drq_pad: int = 2  # DrQ random-shift augmentation, in pixels (0 turns it off)
    # Share of the core's units that the learner's warmup tunes (learner.warmup_steps). Below 1 the core
    # is a double layer: two cores side by side, of round(f * core_hidden) units (warmed) and the rest
    # (left as initialised), the partial warmup of Lambrechts et al. 2023 (they use 0.5).
    warmup_fraction: float = 1.0

    def __post_init__(self) -> None:
        widths = (self.core_hidden, self.head_hidden, self.image_features, self.vector_hidden)
        if min(*widths, *self.image_channels) < 1 or not self.image_channels:
            raise ValueError("network widths and image_channels must be positive (and at least one conv)")
        if self.drq_pad < 0:
            raise ValueError(f"drq_pad must be >= 0, got {self.drq_pad}")
        if self.critic_ensemble < 2:
            raise ValueError("critic_ensemble must be >= 2 (V regresses on the min of two Q heads)")
        if self.policy_modes < 1:
            raise ValueError("policy_modes must be >= 1")
        if self.framestack < 1:
            raise ValueError("framestack must be >= 1")
        if not 0.0 < self.warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must lie in (0, 1], got {self.warmup_fraction}")
        if self.warmup_fraction < 1.0 and not 1 <= self.warmed_units < self.core_hidden:
            raise ValueError(
                f"warmup_fraction {self.warmup_fraction} of core_hidden {self.core_hidden} leaves one of "
                "the double layer's two cores without units"
            )
        if self.warmup_fraction < 1.0 and self.core == "framestack":
            raise ValueError("the framestack core has no recurrence to warm up: keep warmup_fraction 1")

    @property
    def warmed_units(self) -> int:
        return round(self.warmup_fraction * self.core_hidden)


@dataclass
class LearnerConfig:
    algorithm: Algorithm = "aawr"  # what the critic sees: history + privileged, privileged, history; bc: none
    network: NetworkConfig = field(default_factory=NetworkConfig)
    gamma: float = 0.97  # discount per control step
    expectile: float = 0.8  # tau of the expectile regression of V onto Q
    beta: float = 0.3  # temperature of exp(A / beta)
    # Divide A by its batch standard deviation before weighting, so beta does not depend on the
    # reward scale and the discount (one control step changes a sparse-reward value by ~(1 - gamma)).
    normalize_advantages: bool = False
    # Least std(A) that normalisation divides by, in reward units: a flat critic's tiny advantages stay
    # tiny (weights near 1, as BC) instead of being blown up into noise.
    advantage_scale_floor: float = 1e-3
    max_weight: float = 100.0  # clip of exp(A / beta), so one lucky advantage cannot swamp a batch
    weighting: Weighting = "exp"  # offline weights: exp(A / beta), or the indicator 1[A > 0]
    online_weighting: Weighting = "indicator"  # the paper switches to 1[A > 0] online
    target_tau: float = 0.005  # Polyak rate of the target critic
    # Decay of an exponential moving average of the actor's weights, the policy that is evaluated,
    # explores and deploys (0: the actor itself). It smooths the update-to-update swings of a policy
    # trained on few demos.
    policy_ema: float = 0.0
    actor_lr: float = 3e-4  # Adam step size of the policy
    critic_lr: float = 3e-4  # Adam step size of the Q ensemble and V
    grad_clip: float = 10.0  # max global gradient norm, per network
    batch_size: int = 32  # sequences per batch
    seq_len: int = 16  # trained steps per sequence
    burn_in: int = 8  # steps that only warm up the recurrent state
    # The privileged keys the critic sees (None: all). A key that reveals the outcome of what the
    # agent has not yet observed (the T-maze's goal) lets the critic credit lucky guesses; a key
    # that summarises what the agent could know (its belief) spares the critic learning memory.
    critic_privileged_keys: list[str] | None = None
    # Warmup of the recurrent cores before training (Lambrechts et al. 2023; policies.warmup): Adam
    # steps that raise the differentiable variability amongst attractors of the actor's core (and the
    # critic's history core) on the demos' inputs. Only a freshly built learner is warmed up, never one
    # loaded from a checkpoint. 0: off; the paper uses about 100.
    warmup_steps: int = 0
    # Adam step size of the warmup. On the T-maze preset's GRU, 3e-2 gave VAA 1 at 10,000 steps; 1e-2
    # mostly slowed the decay (VAA ~0.05 at 10,000 steps, ~1 at 200).
    warmup_lr: float = 3e-2

    def __post_init__(self) -> None:
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must lie in (0, 1), got {self.expectile}")
        if not self.beta > 0:  # also refuses NaN
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if not 0.0 <= self.policy_ema < 1.0:
            raise ValueError(f"policy_ema must lie in [0, 1), got {self.policy_ema}")
        if not 0.0 < self.target_tau <= 1.0:
            raise ValueError(f"target_tau must lie in (0, 1], got {self.target_tau}")
        if not min(self.max_weight, self.grad_clip, self.actor_lr, self.critic_lr) > 0:
            raise ValueError("max_weight, grad_clip, actor_lr and critic_lr must be > 0")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must lie in [0, 1), got {self.gamma}")
        if self.batch_size < 1 or self.seq_len < 1 or self.burn_in < 0:
            raise ValueError("batch_size and seq_len must be >= 1 and burn_in >= 0")
        if self.advantage_scale_floor <= 0:
            raise ValueError(f"advantage_scale_floor must be > 0, got {self.advantage_scale_floor}")
        if self.critic_privileged_keys is not None and not self.critic_privileged_keys:
            raise ValueError("critic_privileged_keys must name at least one key (or be null for all)")
        if self.warmup_steps < 0 or not self.warmup_lr > 0:
            raise ValueError("warmup_steps must be >= 0 and warmup_lr > 0")
        if self.warmup_steps and self.network.core == "framestack":
            raise ValueError("the framestack core has no recurrence to warm up: set warmup_steps 0")

    @property
    def uses_critic(self) -> bool:
        return self.algorithm != "bc"
