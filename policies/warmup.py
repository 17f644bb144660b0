"""Reachable multistability of a recurrent core, and the warmup that raises it.

Lambrechts, De Geeter, Vecoven, Ernst, Drion (2023), "Warming up recurrent neural networks to
maximise reachable multistability greatly improves learning" (Neural Networks), following the
definitions of the authors' reference implementation (github.com/glambrechts/warmup):

    start states    h0_i = the core's state after a random-length prefix of input sequence i
    final states    h_i  = the state after K steps of one constant input u ~ N(0, I), from h0_i
    VAA             = 1/n sum_i 1 / #{j : ||h_j - h_i|| < eps}
                      (the number of distinct attractors reached, over n: 1 when all differ,
                      1/n when all runs end in the same state)
    VAA*            = 1/n sum_i 1 / sum_j C_ij,   C_ij = 1 - relu(d_ij - eps) / (d_ij + 1e-6),
                      d_ij = ||tanh(h_i) - tanh(h_j)||
                      (C_ij is 1 within eps and eps / d_ij beyond: a differentiable count)
    warmup          Adam steps on (VAA* - 0.95)^2, with K drawn in [1, min(1 + 10 s, 200)] at step s

The inputs are what the core reads in the learner: the encoded onboard observations of demo windows.
A double-layer core (`SplitCore`) is warmed, and measured, on its warmed half only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional

from policies.networks import HistoryEncoder, RecurrentCore, warmed_core

TOLERANCE = 1e-4  # eps: final states closer than this are one attractor
VAA_TARGET = 0.95  # the warmup's target for VAA*, as in the paper
# K of the measured VAA, as in the paper. Shorter overstates it: a GRU warmed with lr 1e-2 had VAA
# 0.99 at K = 200 and 0.05 at K = 10,000 (slow transients, not attractors).
MEASURE_STEPS = 10_000
STABILISATION_GROWTH, STABILISATION_MAX = 10, 200  # the warmup's schedule of K


def vaa(final: Tensor, tolerance: float = TOLERANCE) -> float:
    """Variability amongst attractors of final states [n, S]."""
    # [n, n], the diagonal included; exact distances, not the matmul shortcut (its zero is not exact)
    close = torch.cdist(final, final, compute_mode="donot_use_mm_for_euclid_dist") < tolerance
    return (1.0 / close.sum(dim=1).float()).mean().item()


def vaa_star(final: Tensor, tolerance: float = TOLERANCE) -> Tensor:
    """The differentiable VAA* of final states [n, S] (a scalar tensor)."""
    squashed = torch.tanh(final)
    # cdist's gradient at zero distance (the diagonal) is NaN; the pairwise norm with a tiny floor is not
    gaps = squashed[:, None] - squashed[None]
    distance = gaps.pow(2).sum(-1).clamp(min=1e-12).sqrt()
    close = 1.0 - functional.relu(distance - tolerance) / (distance + 1e-6)
    return (1.0 / close.sum(dim=1)).mean()


def start_states(core: RecurrentCore, inputs: Tensor, generator: torch.Generator) -> Tensor:
    """The state after a prefix of random length (1..T) of each input sequence [n, T, D] -> [n, S]."""
    n, steps = inputs.shape[:2]
    lengths = torch.randint(1, steps + 1, (n, 1), generator=generator).to(inputs.device)
    state = core.initial_state(n, inputs.device)
    for t in range(steps):  # all sequences step together; each keeps its state once its prefix ends
        state = torch.where(t < lengths, core(inputs[:, t : t + 1], state)[1], state)
    return state


def final_states(core: RecurrentCore, start: Tensor, steps: int, generator: torch.Generator) -> Tensor:
    """The states after `steps` steps of one constant input u ~ N(0, I), the same for every run."""
    u = torch.randn(1, 1, core.in_dim, generator=generator).to(start.device)  # drawn on the CPU
    u = u.expand(start.shape[0], steps, core.in_dim)
    return core(u, start)[1]


@torch.no_grad()
def measure_vaa(
    core: RecurrentCore, inputs: Tensor, seed: int = 0, steps: int = MEASURE_STEPS, draws: int = 3
) -> float:
    """VAA of a core (its warmed part) from the inputs [n, T, D], averaged over `draws` constant inputs."""
    core = warmed_core(core)
    generator = torch.Generator().manual_seed(seed)
    values = [
        vaa(final_states(core, start_states(core, inputs, generator), steps, generator)) for _ in range(draws)
    ]
    return sum(values) / draws


def warm_up(core: RecurrentCore, inputs: Tensor, steps: int, lr: float, seed: int = 0) -> list[float]:
    """`steps` Adam steps of the warmup on the core's warmed part; returns VAA* before each step."""
    core = warmed_core(core)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(core.parameters(), lr=lr)
    history = []
    for step in range(steps):
        stabilisation = min(1 + STABILISATION_GROWTH * step, STABILISATION_MAX)
        k = int(torch.randint(1, stabilisation + 1, (), generator=generator))
        measure = vaa_star(final_states(core, start_states(core, inputs, generator), k, generator))
        loss = (measure - VAA_TARGET).pow(2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(measure.item())
    return history


@dataclass
class WarmupResult:
    vaa_before: float
    vaa_after: float
    vaa_star: list[float]  # VAA* before each warmup step


def warm_up_history(
    history: HistoryEncoder,
    onboard: dict[str, Tensor],
    steps: int,
    lr: float,
    seed: int = 0,
    settle: int = MEASURE_STEPS,
) -> WarmupResult:
    """Warm up a history encoder's core on its own encoding of onboard windows [n, T, ...] (the
    encoder itself is left alone), measuring the VAA (after `settle` steps) before and after."""
    with torch.no_grad():
        inputs = history.encoder(onboard)
    before = measure_vaa(history.core, inputs, seed, settle)
    trace = warm_up(history.core, inputs, steps, lr, seed)
    return WarmupResult(before, measure_vaa(history.core, inputs, seed, settle), trace)
