"""Stochastic weight averaging over the ends of a run's last epochs (``train.swa_epochs``; Izmailov et al., 2018).

With :math:`\\theta_e` the weights at the end of epoch :math:`e` of :math:`E`, SWA over the last :math:`N` epochs
serves their mean

.. math::
    \\bar\\theta = \\frac{1}{N} \\sum_{e = E - N + 1}^{E} \\theta_e

kept as a running mean by :class:`torch.optim.swa_utils.AveragedModel` (so resuming needs only the mean and its
count). The BatchNorm statistics of the snapshots do not belong to their mean, so after the last epoch they are
re-estimated over one pass of augmented training clouds (:func:`torch.optim.swa_utils.update_bn`, a cumulative
mean over the batches). Pair it with a flat or gently falling learning rate (``train.lr_min`` near ``train.lr``):
the snapshots should sample one basin, not walk down it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, update_bn


class WeightAverage:
    """The running mean of ``model``'s parameters over the epoch ends it is given (:meth:`add`)."""

    def __init__(self, model: nn.Module):
        self.averaged = AveragedModel(model, use_buffers=False)  # buffers (BN statistics) are re-estimated instead

    @property
    def count(self) -> int:
        return int(self.averaged.n_averaged)

    def add(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def apply(self, model: nn.Module, batches: Iterable[Tensor]) -> None:
        """Copy the mean into ``model``, then re-estimate its BatchNorm statistics over ``batches`` (``[B, N, 3]``
        clouds, in training mode: what the statistics see in training)."""
        if self.count == 0:
            raise RuntimeError("no weights were averaged: call add() at an epoch end first")
        with torch.no_grad():
            for mine, mean in zip(model.parameters(), self.averaged.module.parameters(), strict=True):
                mine.copy_(mean)
            update_bn(batches, model)

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
