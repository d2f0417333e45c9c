"""HKD: holistic knowledge distillation (Zhou et al., "Distilling Holistic Knowledge with Graph Neural Networks",
ICCV 2021), for point-cloud classifiers.

Per mini-batch of ``B`` clouds, each network gets an instance graph: a kNN graph over the batch built on its own
predictions (softmax probabilities, Euclidean, ``k_g`` neighbours, self excluded, symmetrised; the teacher's graph
is fixed by the frozen teacher's predictions). Node attributes are the network's global features ``x`` ``[B, D]``
(the pooled embedding its MLP head reads). A one-hop TAGCN layer (``L = 1``), with its own weights per network,
mixes each node with its neighbours:

.. math::
    h = \\mathrm{norm}\\big(x W_0 + \\hat A x W_1\\big), \\qquad
    \\hat A = D^{-1/2} (A + I) D^{-1/2}, \\qquad p = \\mathrm{norm}(x W_0)

``h`` ``[B, d]`` is the holistic (graph) embedding, ``p`` the plain (individual) one, both L2-normalised in a shared
dimension ``d``. InfoNCE pulls the student's and the teacher's holistic embeddings of the same cloud together against
negatives from two memory banks of plain features of earlier batches (a FIFO queue per network, ``Q`` rows):

.. math::
    \\mathcal{L}_{HOL} = \\tfrac12 \\big[ \\mathrm{NCE}(h^s_i, h^t_i; P^t) + \\mathrm{NCE}(h^t_i, h^s_i; P^s) \\big],
    \\quad \\mathrm{NCE}(a, b; P) = -\\log \\frac{e^{a \\cdot b / \\tau}}{e^{a \\cdot b / \\tau}
        + \\sum_{q \\in P} e^{a \\cdot q / \\tau}}

The paper keeps dataset-sized banks indexed by sample (as CRD does); the trainer here does not pass sample ids, so
the banks are MoCo-style queues of the most recent ``Q`` plain features (checkpointed as buffers). Gradients reach
the student and both TAGCN heads, never the teacher (its inputs are detached).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def instance_knn_graph(predictions: Tensor, k: int) -> Tensor:
    """Symmetric 0/1 adjacency ``[B, B]`` (no self loops) of each row's ``k`` nearest rows of ``predictions``
    ``[B, K]`` (probabilities) in Euclidean distance; ``k`` is capped at ``B - 1``."""
    b = predictions.shape[0]
    k = min(k, b - 1)
    adj = predictions.new_zeros(b, b)
    if k < 1:
        return adj
    dist = torch.cdist(predictions, predictions)
    dist.fill_diagonal_(float("inf"))
    idx = dist.topk(k, dim=1, largest=False).indices
    adj.scatter_(1, idx, 1.0)
    return torch.maximum(adj, adj.T)


def normalized_adjacency(adj: Tensor) -> Tensor:
    """``D^{-1/2} (A + I) D^{-1/2}`` for a 0/1 adjacency ``[B, B]``."""
    a = adj + torch.eye(adj.shape[0], dtype=adj.dtype, device=adj.device)
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


class TAGCNHead(nn.Module):
    """One-hop TAGCN (``h = x W_0 + Â x W_1``) from ``in_dim`` to ``out_dim``; returns (holistic, plain), both
    L2-normalised."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.w0 = nn.Linear(in_dim, out_dim)
        self.w1 = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: Tensor, adj_hat: Tensor) -> tuple[Tensor, Tensor]:
        plain = self.w0(x)
        return F.normalize(plain + self.w1(adj_hat @ x), dim=1), F.normalize(plain, dim=1)


def info_nce(anchor: Tensor, positive: Tensor, negatives: Tensor, temperature: float) -> Tensor:
    """Mean over rows of ``-log softmax([a·p, a·q_1, ...] / τ)[0]``; anchor, positive ``[B, d]``; negatives
    ``[Q, d]``."""
    pos = (anchor * positive).sum(1, keepdim=True)
    logits = torch.cat([pos, anchor @ negatives.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(anchor.shape[0], dtype=torch.long, device=anchor.device))


class HKDLoss(nn.Module):
    """``forward(x_s [B, D_s], x_t [B, D_t], logits_s [B, K], logits_t [B, K]) -> L_HOL``.

    ``dim``: the shared embedding size ``d``; ``k``: instance-graph neighbours; ``queue``: bank rows ``Q``;
    ``temperature``: ``τ``. The banks start empty; until they hold a row, the other clouds of the batch are the
    negatives (a plain in-batch InfoNCE), so the first step already has a signal."""

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        dim: int = 128,
        k: int = 4,
        queue: int = 4096,
        temperature: float = 0.1,
    ):
        super().__init__()
        if k < 1 or queue < 1 or temperature <= 0:
            raise ValueError(f"need k >= 1, queue >= 1 and temperature > 0; got {k}, {queue}, {temperature}")
        self.k, self.temperature = k, temperature
        self.student_head = TAGCNHead(student_dim, dim)
        self.teacher_head = TAGCNHead(teacher_dim, dim)
        self.register_buffer("bank_s", torch.zeros(queue, dim))
        self.register_buffer("bank_t", torch.zeros(queue, dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))  # rows written so far (saturates at Q)
        self.register_buffer("cursor", torch.zeros((), dtype=torch.long))

    def forward(self, x_s: Tensor, x_t: Tensor, logits_s: Tensor, logits_t: Tensor) -> Tensor:
        x_t, logits_t = x_t.detach(), logits_t.detach()
        adj_s = normalized_adjacency(instance_knn_graph(logits_s.detach().softmax(1), self.k))
        adj_t = normalized_adjacency(instance_knn_graph(logits_t.softmax(1), self.k))
        h_s, p_s = self.student_head(x_s, adj_s)
        h_t, p_t = self.teacher_head(x_t, adj_t)
        n = int(self.filled)
        if n == 0:  # in-batch negatives: the other clouds' plain features
            loss = 0.5 * (self._in_batch(h_s, h_t, p_t) + self._in_batch(h_t, h_s, p_s))
        else:
            bank_s, bank_t = self.bank_s[:n].clone(), self.bank_t[:n].clone()  # enqueue writes the banks below
            loss = 0.5 * (info_nce(h_s, h_t, bank_t, self.temperature) + info_nce(h_t, h_s, bank_s, self.temperature))
        if self.training:
            self._enqueue(p_s.detach(), p_t.detach())
        return loss

    def _in_batch(self, anchor: Tensor, positive: Tensor, plain_other: Tensor) -> Tensor:
        b = anchor.shape[0]
        pos = (anchor * positive).sum(1, keepdim=True)
        neg = (anchor @ plain_other.T).masked_fill(torch.eye(b, dtype=torch.bool, device=anchor.device), -1e9)
        logits = torch.cat([pos, neg], dim=1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(b, dtype=torch.long, device=anchor.device))

    @torch.no_grad()
    def _enqueue(self, p_s: Tensor, p_t: Tensor) -> None:
        q = self.bank_s.shape[0]
        p_s, p_t = p_s[-q:], p_t[-q:]  # a batch larger than the bank keeps its last Q rows
        rows = (int(self.cursor) + torch.arange(p_s.shape[0], device=p_s.device)) % q
        self.bank_s[rows] = p_s
        self.bank_t[rows] = p_t
        self.cursor.fill_((int(self.cursor) + p_s.shape[0]) % q)
        self.filled.fill_(min(q, int(self.filled) + p_s.shape[0]))
