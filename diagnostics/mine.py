"""MINE: a neural estimate of the mutual information I(X; Y) (Belghazi et al. 2018).

The Donsker-Varadhan bound holds for any statistics network T:

    I(X; Y) >= E_P(x,y)[T(x, y)] - log E_P(x)P(y)[exp T(x, y)]

Samples of the product of the marginals pair each x with the y of another sample (a shuffle). On a
minibatch, the gradient of the log term, E[exp(T) grad T] / E[exp(T)], is biased; MINE divides by a
moving average of the denominator over batches instead (the paper's bias correction):

    loss = -( mean T(x, y) - mean exp T(x, y~) / ma ),   ma <- (1 - a) ma + a mean exp T(x, y~)

with ma held constant in the gradient. T is trained on one split and the bound is evaluated on
another (validation), so a network that memorises its training pairs cannot report information that
is not there. The permutation baseline runs the same estimator on targets shuffled across samples:
whatever it reports is the estimator's own bias and noise at this sample size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from policies.networks import mlp


@dataclass
class MineConfig:
    """The statistics network and its training."""

    hidden: int = 128  # width of the two hidden layers of T(x, y)
    steps: int = 2000  # Adam steps on the training split
    batch_size: int = 512  # pairs per step (and as many shuffled pairs)
    lr: float = 1e-3  # Adam step size
    ma_rate: float = 0.01  # rate a of the moving average of mean exp T that corrects the gradient
    eval_shuffles: int = 8  # shuffles of the validation targets that estimate its product of marginals

    def __post_init__(self) -> None:
        if min(self.hidden, self.steps, self.batch_size, self.eval_shuffles) < 1:
            raise ValueError("hidden, steps, batch_size and eval_shuffles must be >= 1")
        if not 0.0 < self.ma_rate <= 1.0 or not self.lr > 0:
            raise ValueError("ma_rate must lie in (0, 1] and lr must be > 0")


@dataclass(frozen=True)
class MineEstimate:
    """Nats. `validation` is the estimate; `baseline` the same estimator with shuffled targets."""

    validation: float  # the DV bound of the trained T on the validation split
    train: float  # the same on the training split (above `validation`: T overfits)
    baseline: float  # validation bound of T trained and evaluated on targets shuffled across samples


def dv_bound(network: torch.nn.Module, x: Tensor, y: Tensor, y_shuffled: list[Tensor]) -> float:
    """E[T(x, y)] - log mean exp T(x, y~) over every shuffled pairing (log-sum-exp: no overflow)."""
    with torch.no_grad():
        joint = network(torch.cat([x, y], dim=1)).mean()
        marginal = torch.cat([network(torch.cat([x, ys], dim=1)).squeeze(1) for ys in y_shuffled])
        return float(joint - (torch.logsumexp(marginal, 0) - math.log(marginal.numel())))


def _standardised(train: np.ndarray, *others: np.ndarray) -> list[Tensor]:
    """z-scores by the training split's statistics (a constant column keeps its scale)."""
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    return [torch.as_tensor((a - mean) / std, dtype=torch.float32) for a in (train, *others)]


def _train(x: Tensor, y: Tensor, config: MineConfig, generator: torch.Generator) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, the process's generator untouched
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        network = mlp(x.shape[1] + y.shape[1], config.hidden, 1)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    moving_average = None
    n = x.shape[0]
    for _ in range(config.steps):
        index = torch.randint(0, n, (min(config.batch_size, n),), generator=generator)
        other = torch.randint(0, n, index.shape, generator=generator)  # y of an independent sample
        joint = network(torch.cat([x[index], y[index]], dim=1))
        marginal_exp = network(torch.cat([x[index], y[other]], dim=1)).clamp(max=30.0).exp().mean()
        batch = marginal_exp.detach()
        moving_average = (
            batch if moving_average is None else torch.lerp(moving_average, batch, config.ma_rate)
        )
        loss = -(joint.mean() - marginal_exp / moving_average)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return network.eval()


def _fit_and_bound(
    x: list[Tensor], y: list[Tensor], config: MineConfig, generator: torch.Generator
) -> tuple[float, float]:
    """(validation, train) bounds of T trained on split 0; splits are (train, validation)."""
    network = _train(x[0], y[0], config, generator)
    bounds = []
    for xs, ys in zip(x, y, strict=True):
        shuffles = [ys[torch.randperm(len(ys), generator=generator)] for _ in range(config.eval_shuffles)]
        bounds.append(dv_bound(network, xs, ys, shuffles))
    return bounds[1], bounds[0]


def mutual_information(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_validation: np.ndarray,
    y_validation: np.ndarray,
    config: MineConfig | None = None,
    seed: int = 0,
) -> MineEstimate:
    """I(X; Y) in nats from samples x [N, Dx], y [N, Dy] split into training and validation rows
    (split by episode when rows within an episode are related), beside the permutation baseline."""
    config = config or MineConfig()
    if len(x_train) < 2 or len(x_validation) < 2:
        raise ValueError("MINE needs at least two samples in each split")
    generator = torch.Generator().manual_seed(seed)
    x = _standardised(x_train.reshape(len(x_train), -1), x_validation.reshape(len(x_validation), -1))
    y = _standardised(y_train.reshape(len(y_train), -1), y_validation.reshape(len(y_validation), -1))
    validation, train = _fit_and_bound(x, y, config, generator)
    shuffled = [part[torch.randperm(len(part), generator=generator)] for part in y]
    baseline, _ = _fit_and_bound(x, shuffled, config, generator)
    return MineEstimate(validation, train, baseline)
