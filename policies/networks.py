"""Networks: observation encoders, recurrent cores, the onboard-only actor and the asymmetric critic.

Tensors are time-major inside a batch of sequences: observations [B, T, ...], features [B, T, D].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from policies.config import ActionSampling, Algorithm, NetworkConfig
from policies.episodes import Episode, EpisodeFile

LOG_STD_MIN, LOG_STD_MAX = -5.0, 1.0


@dataclass(frozen=True)
class KeySpec:
    shape: tuple[int, ...]
    dtype: str

    @property
    def is_image(self) -> bool:
        return self.dtype == "uint8" and len(self.shape) == 3


PartSpec = dict[str, KeySpec]


@dataclass(frozen=True)
class ObsSpec:
    """Shapes and dtypes of the onboard and privileged keys of one task, and the action size."""

    onboard: PartSpec
    privileged: PartSpec
    action_dim: int

    @staticmethod
    def from_arrays(
        onboard: dict[str, np.ndarray], privileged: dict[str, np.ndarray], action_dim: int
    ) -> ObsSpec:
        """From one observation (no leading time axis)."""

        def part(arrays: dict[str, np.ndarray]) -> PartSpec:
            return {
                k: KeySpec(tuple(int(d) for d in v.shape), str(v.dtype)) for k, v in sorted(arrays.items())
            }

        return ObsSpec(part(onboard), part(privileged), int(action_dim))

    @staticmethod
    def from_episode(episode: Episode | EpisodeFile) -> ObsSpec:
        first = episode.window(0, 1)
        return ObsSpec.from_arrays(
            {k: v[0] for k, v in first.onboard.items()},
            {k: v[0] for k, v in first.privileged.items()},
            first.action.shape[1],
        )

    def to_dict(self) -> dict:
        return {
            "onboard": {k: [list(s.shape), s.dtype] for k, s in self.onboard.items()},
            "privileged": {k: [list(s.shape), s.dtype] for k, s in self.privileged.items()},
            "action_dim": self.action_dim,
        }

    @staticmethod
    def from_dict(data: dict) -> ObsSpec:
        def part(d: dict) -> PartSpec:
            return {k: KeySpec(tuple(shape), dtype) for k, (shape, dtype) in d.items()}

        return ObsSpec(part(data["onboard"]), part(data["privileged"]), int(data["action_dim"]))


def random_shift(images: Tensor, pad: int) -> Tensor:
    """DrQ augmentation: replicate-pad by `pad` pixels and crop back at a random offset.

    images: [B, T, C, H, W]; one offset per sequence, so a sequence stays temporally consistent.
    """
    b, t, c, h, w = images.shape
    padded = nn.functional.pad(images.reshape(b, t * c, h, w), (pad,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (b, 1), device=images.device)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), device=images.device)
    rows = (dy + torch.arange(h, device=images.device))[:, :, None]  # [B, H, 1]
    cols = (dx + torch.arange(w, device=images.device))[:, None, :]  # [B, 1, W]
    batch = torch.arange(b, device=images.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[batch, rows, cols]  # [B, H, W, T*C]
    return cropped.permute(0, 3, 1, 2).reshape(b, t, c, h, w)


class ImageEncoder(nn.Module):
    """Small conv stack (first conv strided) -> linear -> LayerNorm -> tanh, as in DrQ / SAC-AE."""

    def __init__(self, shape: tuple[int, ...], channels: tuple[int, ...], features: int) -> None:
        super().__init__()
        h, w, c = shape
        layers: list[nn.Module] = []
        for i, out in enumerate(channels):
            layers += [nn.Conv2d(c, out, 3, stride=2 if i == 0 else 1), nn.ReLU()]
            c = out
        self.convs = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, shape[2], h, w)).shape[1]
        self.project = nn.Sequential(nn.Linear(flat, features), nn.LayerNorm(features), nn.Tanh())

    def forward(self, images: Tensor) -> Tensor:  # [N, C, H, W] float in [0, 1]
        return self.project(self.convs(images))


class PartEncoder(nn.Module):
    """Encodes one part of the observation (all onboard keys, or all privileged keys) to [B, T, D].

    Each image key gets its own conv encoder; all vector keys are concatenated into one MLP.
    """

    def __init__(self, spec: PartSpec, config: NetworkConfig) -> None:
        super().__init__()
        if not spec:
            raise ValueError("cannot encode an empty observation part")
        self.spec = spec
        self.image_keys = [k for k, s in spec.items() if s.is_image]
        self.vector_keys = [k for k, s in spec.items() if not s.is_image]
        self.drq_pad = config.drq_pad
        self.images = nn.ModuleDict(
            {
                k: ImageEncoder(spec[k].shape, config.image_channels, config.image_features)
                for k in self.image_keys
            }
        )
        vector_dim = sum(math.prod(spec[k].shape) for k in self.vector_keys)
        self.vectors = (
            nn.Sequential(
                nn.Linear(vector_dim, config.vector_hidden), nn.LayerNorm(config.vector_hidden), nn.Tanh()
            )
            if self.vector_keys
            else None
        )
        self.out_dim = config.image_features * len(self.image_keys) + (
            config.vector_hidden if self.vector_keys else 0
        )

    def forward(self, obs: dict[str, Tensor], augment: bool = False) -> Tensor:
        if set(obs) != set(self.spec):
            raise KeyError(f"expected observation keys {sorted(self.spec)}, got {sorted(obs)}")
        features = []
        for key in self.image_keys:
            x = obs[key]
            b, t = x.shape[:2]
            x = x.permute(0, 1, 4, 2, 3).float() / 255.0  # [B, T, C, H, W]
            if augment and self.drq_pad > 0:
                x = random_shift(x, self.drq_pad)
            features.append(self.images[key](x.flatten(0, 1)).unflatten(0, (b, t)))
        if self.vectors is not None:
            flat = torch.cat([obs[k].float().flatten(2) for k in self.vector_keys], dim=-1)
            features.append(self.vectors(flat))
        return torch.cat(features, dim=-1)


# --- Recurrent cores: forward(x [B, T, D], state [B, S]) -> (y [B, T, H], state [B, S]) -------------


class RecurrentCore(nn.Module):
    in_dim: int
    out_dim: int
    state_dim: int

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.zeros(batch, self.state_dim, device=device)


class GRUCore(RecurrentCore):
    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(in_dim, hidden, batch_first=True)
        self.in_dim, self.out_dim, self.state_dim = in_dim, hidden, hidden

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        y, h = self.rnn(x, state[None].contiguous())
        return y, h[0]


class LSTMCore(RecurrentCore):
    """State is [h, c] concatenated, so every core carries one flat tensor."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, batch_first=True)
        self.in_dim, self.out_dim, self.state_dim = in_dim, hidden, 2 * hidden

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, c = state.chunk(2, dim=-1)
        y, (h, c) = self.rnn(x, (h[None].contiguous(), c[None].contiguous()))
        return y, torch.cat([h[0], c[0]], dim=-1)


class BistableCore(RecurrentCore):
    """Bistable recurrent cells of Vecoven et al. (2021), BRC and its neuromodulated variant nBRC:

        c_t = sigmoid(U_c x_t + m_c(h_{t-1}))          update gate
        a_t = 1 + tanh(U_a x_t + m_a(h_{t-1}))         a_t > 1 makes a neuron bistable
        h_t = c_t * h_{t-1} + (1 - c_t) * tanh(U_h x_t + a_t * h_{t-1})

    BRC: m(h) = w * h (per-neuron memory); nBRC: m(h) = W h (full recurrent matrices).
    """

    def __init__(self, in_dim: int, hidden: int, neuromodulated: bool) -> None:
        super().__init__()
        self.inputs = nn.Linear(in_dim, 3 * hidden)  # U_c, U_a, U_h in one matmul
        if neuromodulated:
            self.memory = nn.Linear(hidden, 2 * hidden, bias=False)
        else:
            self.memory_diag = nn.Parameter(torch.empty(2 * hidden).uniform_(-1.0, 1.0))
        self.neuromodulated = neuromodulated
        self.in_dim, self.out_dim, self.state_dim = in_dim, hidden, hidden

    def _memory(self, h: Tensor) -> Tensor:
        return self.memory(h) if self.neuromodulated else self.memory_diag * h.repeat(1, 2)

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        ux_c, ux_a, ux_h = self.inputs(x).chunk(3, dim=-1)
        h = state
        outputs = []
        for t in range(x.shape[1]):
            m_c, m_a = self._memory(h).chunk(2, dim=-1)
            c = torch.sigmoid(ux_c[:, t] + m_c)
            a = 1.0 + torch.tanh(ux_a[:, t] + m_a)
            h = c * h + (1.0 - c) * torch.tanh(ux_h[:, t] + a * h)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h


class FrameStackCore(RecurrentCore):
    """The non-recurrent baseline: an MLP over the last k feature frames; the state is the k-1 previous.

    At an episode start the missing frames are zeros, as with the recurrent cores' zero state.
    """

    def __init__(self, in_dim: int, hidden: int, frames: int) -> None:
        super().__init__()
        self.frames, self.in_dim = frames, in_dim
        self.mlp = nn.Sequential(nn.Linear(frames * in_dim, hidden), nn.ReLU())
        self.out_dim, self.state_dim = hidden, (frames - 1) * in_dim

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        b, t, d = x.shape
        history = torch.cat([state.reshape(b, self.frames - 1, d), x], dim=1)  # [B, k-1+T, D]
        windows = history.unfold(1, self.frames, 1)  # [B, T, D, k]
        y = self.mlp(windows.transpose(2, 3).reshape(b, t, self.frames * d))
        return y, history[:, t:].reshape(b, self.state_dim)


def affine_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """Every h_t of h_t = a_t * h_{t-1} + b_t (elementwise), by a parallel prefix scan.

    a, b: [B, T, H]; h0: [B, H] -> h: [B, T, H]. The step maps f_t(h) = a_t h + b_t compose
    associatively, (f_j o f_i)(h) = a_j a_i h + (a_j b_i + b_j), so a Hillis-Steele scan finds all
    prefixes f_t o ... o f_1 in ceil(log2 T) rounds of elementwise work over the whole sequence
    (O(T log T) work, O(log T) depth) instead of T dependent steps. h0 is folded into the first
    offset, so the offsets of the prefixes are the states.
    """
    b = torch.cat([a[:, :1] * h0[:, None] + b[:, :1], b[:, 1:]], dim=1)
    shift = 1
    while shift < b.shape[1]:  # out of place: autograd keeps every round
        b = torch.cat([b[:, :shift], a[:, shift:] * b[:, :-shift] + b[:, shift:]], dim=1)
        a = torch.cat([a[:, :shift], a[:, shift:] * a[:, :-shift]], dim=1)
        shift *= 2
    return b


class BMRUCore(RecurrentCore):
    """A bistable memory recurrent unit: quantised states with hysteresis, trained by a parallel scan.

    From De Geeter, Lambrechts, Ernst, Drion (2026), "Parallelizable memory recurrent units", as its
    abstract and later work (Brandoit et al. 2026) describe it: a memory recurrent unit drops the
    transient dynamics of a nonlinear RNN and keeps only its multistability, so each unit's state
    jumps between stable states and holds them; the bistable one (BMRU) has quantised states with
    hysteresis and is computed by the parallel scan; a state update blocks the gradient. The paper's
    own equations were not available here: the ones below are this project's design, built to have
    those properties, and are not claimed to match the paper's.

        z_t    = W_z x_t + c_z                   drive, from the input only
        beta_t = softplus(W_b x_t + c_b)         half-width of the hysteresis band, from the input only
        a_t    = 1[|z_t| <= beta_t]              1: inside the band, hold; 0: switch
        h_t    = a_t h_{t-1} + (1 - a_t) sign(z_t)
        y_t    = [h_t, x_t]                      the state, and the input skipped past it (the D u_t of SSMs)

    Each unit has two stable states, -1 and +1 (0 only until its first switch): a drive past the
    band sets one, anything inside the band holds it, with no decay, so a bit stays for as long as
    the input stays inside the band (under zero input, |c_z| <= softplus(c_b), as at initialisation).
    Since a_t and the switch target depend on x_t alone, h_t = a_t h_{t-1} + b_t is an affine
    recurrence, and a whole sequence runs through `affine_scan`; one step at a time (the policy
    runner) is the same recurrence with T = 1.

    The forward pass is exactly the hard recurrence; the backward pass takes straight-through
    surrogate gradients, d a_t ~ d sigmoid(beta_t - |z_t|) and d sign(z_t) ~ d tanh(z_t), since the
    step functions' own gradient is zero. Through a hold, dh_t/dh_{t-1} = 1 exactly.
    """

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.inputs = nn.Linear(in_dim, 2 * hidden)  # W_z, W_b in one matmul
        self.in_dim, self.out_dim, self.state_dim = in_dim, hidden + in_dim, hidden

    def step_maps(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, b_t) of h_t = a_t h_{t-1} + b_t for inputs x [B, T, D]."""
        z, width = self.inputs(x).chunk(2, dim=-1)
        beta = nn.functional.softplus(width)
        hold_soft = torch.sigmoid(beta - z.abs())
        hold = hold_soft + ((z.abs() <= beta).float() - hold_soft).detach()
        level_soft = torch.tanh(z)
        level = level_soft + (torch.sign(z) - level_soft).detach()
        return hold, (1.0 - hold) * level

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h = affine_scan(*self.step_maps(x), state)
        return torch.cat([h, x], dim=-1), h[:, -1]


class SplitCore(RecurrentCore):
    """Two cores side by side on the same input, outputs and states concatenated: the double layer of
    Lambrechts et al. (2023), whose partial warmup warms `warmed` and leaves `cold` as initialised
    (the warmed part gives reachable multistability, the cold part keeps precision)."""

    def __init__(self, warmed: RecurrentCore, cold: RecurrentCore) -> None:
        super().__init__()
        self.warmed, self.cold = warmed, cold
        self.in_dim = warmed.in_dim
        self.out_dim = warmed.out_dim + cold.out_dim
        self.state_dim = warmed.state_dim + cold.state_dim

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        y_warm, s_warm = self.warmed(x, state[:, : self.warmed.state_dim])
        y_cold, s_cold = self.cold(x, state[:, self.warmed.state_dim :])
        return torch.cat([y_warm, y_cold], dim=-1), torch.cat([s_warm, s_cold], dim=-1)


def make_core(in_dim: int, config: NetworkConfig) -> RecurrentCore:
    if config.warmup_fraction < 1.0:
        warmed = config.warmed_units
        return SplitCore(
            _single_core(in_dim, warmed, config), _single_core(in_dim, config.core_hidden - warmed, config)
        )
    return _single_core(in_dim, config.core_hidden, config)


def warmed_core(core: RecurrentCore) -> RecurrentCore:
    """The part of a core that the warmup tunes: all of it, or the warmed half of a double layer."""
    return core.warmed if isinstance(core, SplitCore) else core


def _single_core(in_dim: int, hidden: int, config: NetworkConfig) -> RecurrentCore:
    if config.core == "gru":
        return GRUCore(in_dim, hidden)
    if config.core == "lstm":
        return LSTMCore(in_dim, hidden)
    if config.core in ("brc", "nbrc"):
        return BistableCore(in_dim, hidden, neuromodulated=config.core == "nbrc")
    if config.core == "bmru":
        return BMRUCore(in_dim, hidden)
    if config.core == "framestack":
        return FrameStackCore(in_dim, hidden, config.framestack)
    raise ValueError(f"unknown recurrent core {config.core!r}")


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
    )


class HistoryEncoder(nn.Module):
    """Onboard observations -> per-key encoders -> recurrent core: the agent state h_t."""

    def __init__(self, spec: PartSpec, config: NetworkConfig) -> None:
        super().__init__()
        self.encoder = PartEncoder(spec, config)
        self.core = make_core(self.encoder.out_dim, config)
        self.out_dim = self.core.out_dim

    def forward(
        self, onboard: dict[str, Tensor], state: Tensor, augment: bool = False
    ) -> tuple[Tensor, Tensor]:
        return self.core(self.encoder(onboard, augment), state)


class ActionMixture(torch.distributions.MixtureSameFamily):
    """A Gaussian mixture over actions (as robomimic's GMM heads): demos that search left or right
    are two modes, whose average, a single Gaussian's mean, would not move at all."""

    def act(
        self, sampling: ActionSampling, generator: torch.Generator | Sequence[torch.Generator] | None = None
    ) -> Tensor:
        """One action per batch entry:

        mode       the mean of the most likely component (deterministic)
        component  draw a component, act at its mean (robomimic's low-noise evaluation): a choice
                   between modes stays a choice, the noise within a mode goes
        full       a sample of the whole mixture (exploration)

        Draws come from `generator`, or, given one generator per batch entry (the first axis), each
        entry's from its own: its actions then do not depend on what shares the batch. Draws are
        made on the CPU (where generators live), whatever the device.
        """
        probs = self.mixture_distribution.probs
        normal = self.component_distribution.base_dist
        per_entry = isinstance(generator, Sequence)
        if sampling == "mode":
            index = probs.argmax(-1)
        elif per_entry:
            index = torch.stack([_draw_components(p, g) for p, g in zip(probs, generator, strict=True)])
        else:
            index = _draw_components(probs, generator)
        mean = _select_component(normal.loc, index.to(probs.device))
        if sampling != "full":
            return mean
        if per_entry:
            noise = torch.stack(
                [torch.randn(m.shape, generator=g) for m, g in zip(mean, generator, strict=True)]
            )
        else:
            noise = torch.randn(mean.shape, generator=generator)
        return mean + _select_component(normal.scale, index.to(probs.device)) * noise.to(mean)


def _draw_components(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """A component index per row of probs [..., K], drawn on the CPU."""
    draws = torch.multinomial(probs.detach().cpu().reshape(-1, probs.shape[-1]), 1, generator=generator)
    return draws.reshape(probs.shape[:-1])


def _select_component(values: Tensor, index: Tensor) -> Tensor:
    """values [..., K, A], index [...] -> [..., A]"""
    index = index[..., None, None].expand(*index.shape, 1, values.shape[-1])
    return torch.gather(values, -2, index).squeeze(-2)


class Actor(nn.Module):
    """The recurrent policy pi(a_t | h_t). Its forward takes the onboard part only: there is no
    argument through which a privileged tensor could reach it."""

    def __init__(self, spec: ObsSpec, config: NetworkConfig) -> None:
        super().__init__()
        self.modes, self.action_dim = config.policy_modes, spec.action_dim
        self.history = HistoryEncoder(spec.onboard, config)
        self.head = mlp(self.history.out_dim, config.head_hidden, self.modes * (1 + 2 * spec.action_dim))

    def initial_state(self, batch: int) -> Tensor:
        return self.history.core.initial_state(batch)

    def forward(
        self, onboard: dict[str, Tensor], state: Tensor, augment: bool = False
    ) -> tuple[ActionMixture, Tensor]:
        h, state = self.history(onboard, state, augment)
        out = self.head(h)
        logits = out[..., : self.modes]
        mean, log_std = (
            out[..., self.modes :].unflatten(-1, (self.modes, 2 * self.action_dim)).chunk(2, dim=-1)
        )
        std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        components = torch.distributions.Independent(torch.distributions.Normal(torch.tanh(mean), std), 1)
        return ActionMixture(torch.distributions.Categorical(logits=logits), components), state


class Critic(nn.Module):
    """Q ensemble Q_k(z_t, a_t) and value V(z_t) over critic features z_t, which depend on the algorithm:

    aawr        z_t = [h_t, i_t]   onboard history and privileged signal (the unbiased informed critic)
    aawr-state  z_t = i_t          privileged signal only
    awr         z_t = h_t          onboard history only

    `privileged_keys` picks the privileged keys in i_t (None: all of them).
    """

    def __init__(
        self,
        spec: ObsSpec,
        config: NetworkConfig,
        algorithm: Algorithm,
        privileged_keys: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if algorithm == "bc":
            raise ValueError("BC has no critic")
        uses_history = algorithm in ("aawr", "awr")
        uses_privileged = algorithm in ("aawr", "aawr-state")
        if uses_privileged and not spec.privileged:
            raise ValueError(f"{algorithm} needs privileged observations, but the task has none")
        unknown = set(privileged_keys or ()) - set(spec.privileged)
        if unknown:
            raise ValueError(
                f"critic privileged keys {sorted(unknown)} are not in the task's {sorted(spec.privileged)}"
            )
        self.privileged_keys = list(privileged_keys or spec.privileged)
        privileged_spec = {k: spec.privileged[k] for k in self.privileged_keys}
        self.history = HistoryEncoder(spec.onboard, config) if uses_history else None
        self.privileged = PartEncoder(privileged_spec, config) if uses_privileged else None
        dim = (self.history.out_dim if self.history else 0) + (
            self.privileged.out_dim if self.privileged else 0
        )
        self.q_heads = nn.ModuleList(
            [mlp(dim + spec.action_dim, config.head_hidden, 1) for _ in range(config.critic_ensemble)]
        )
        self.v_head = mlp(dim, config.head_hidden, 1)

    def initial_state(self, batch: int) -> Tensor:
        return self.history.core.initial_state(batch) if self.history else torch.zeros(batch, 0)

    def features(
        self, onboard: dict[str, Tensor], privileged: dict[str, Tensor], state: Tensor, augment: bool = False
    ) -> Tensor:
        parts = []
        if self.history is not None:
            parts.append(self.history(onboard, state, augment)[0])
        if self.privileged is not None:
            parts.append(self.privileged({k: privileged[k] for k in self.privileged_keys}, augment))
        return torch.cat(parts, dim=-1)

    def q_values(self, z: Tensor, action: Tensor) -> Tensor:  # -> [K, B, T]
        za = torch.cat([z, action], dim=-1)
        return torch.stack([head(za).squeeze(-1) for head in self.q_heads])

    def value(self, z: Tensor) -> Tensor:  # -> [B, T]
        return self.v_head(z).squeeze(-1)
