"""Mixture-of-experts feed-forward: a top-k token-choice router over expert FFNs, optional always-on shared
experts, and the two auxiliary router losses.

References:
- Shazeer et al. 2017 (sparsely-gated MoE); Lepikhin et al. 2020 (GShard, top-2); Fedus et al. 2021 (Switch
  Transformer, eq. 4-6): load-balancing loss ``E * sum_e f_e * P_e`` with ``f_e`` the share of routed
  assignments that go to expert e and ``P_e`` its mean router probability; minimum 1 when perfectly balanced.
- Zoph et al. 2022 (ST-MoE, eq. 5): router z-loss ``mean_n logsumexp(logits_n)^2``; defaults 1e-2 / 1e-3 for the
  two coefficients (ST-MoE table 3), as x-transformers and HF ``SwitchTransformers`` cite them.
- Dai et al. 2024 (DeepSeek-MoE): fine-grained experts plus ``num_shared_experts`` that every token passes
  through; implemented as one FFN of width ``num_shared_experts * hidden_dim`` (same function, one matmul).
- Top-k gate weights: softmax over all experts, then the top k, renormalised to sum to 1 (Mixtral / HF
  ``MixtralSparseMoeBlock``; ``normalize_top_k=False`` keeps the raw probabilities as DeepSeek-MoE does).

Deliberate choices and deviations:
- Dropless: no expert capacity, no token dropping (MegaBlocks, Gale et al. 2022); tokens are sorted by expert and
  each expert runs once on its rows (the for-loop dispatch of torchtitan's MoE), combined with ``index_add_``.
  ``bincount(...).tolist()`` syncs with the device once per layer.
- The router runs in fp32 (logits, softmax, top-k, both losses) as ST-MoE recommends (R6).
- Experts are the shared ``MLP`` / ``GLU`` blocks, so one expert with k=1 *is* the dense FFN (tested).
- ``forward`` returns only the output, so the block drops into any layer where an FFN goes. Its router statistics
  of the last call are kept in ``last_stats``; ``pop_router_losses(model)`` collects (and clears) them over all
  MoE blocks of a model, averaged over layers (HF Mixtral's ``load_balancing_loss_func`` also pools all layers,
  so the coefficient does not grow with depth; Switch/ST-MoE sum per layer instead).
- ``keep`` (optional, True = real token) excludes padding from the statistics; padding rows are still routed.
- The combine accumulates in the dtype of the input (the fp32 residual stream under autocast), not in the
  experts' autocast dtype.

Legend: N tokens (B*T flattened), D model width, F expert hidden width, E experts, K experts per token (top-k).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmforge.nn.ffn import GLU, MLP
from lmforge.nn.norms import upcast

__all__ = ["MoEFeedForward", "RouterStats", "pop_router_losses", "route_top_k"]


@dataclass
class RouterStats:
    """One MoE call: the two differentiable losses and the (detached) share of assignments per expert."""

    balance_loss: Tensor  # scalar, Switch eq. 4; 1.0 when balanced
    z_loss: Tensor  # scalar, ST-MoE eq. 5
    load_E: Tensor  # (E,) fraction of the N*K assignments per expert, sums to 1


def route_top_k(
    logits_NE: Tensor, *, top_k: int, normalize_top_k: bool, keep_N: Tensor | None = None
) -> tuple[Tensor, Tensor, RouterStats]:
    """fp32 router: ``(weights_NK, experts_NK, stats)`` from router logits. Pure function (tested on its own)."""
    logits_NE = upcast(logits_NE)
    num_experts = logits_NE.shape[-1]
    probs_NE = torch.softmax(logits_NE, dim=-1)
    weights_NK, experts_NK = probs_NE.topk(top_k, dim=-1)  # sorted: weights_NK[:, 0] is the largest
    if normalize_top_k:
        weights_NK = weights_NK / weights_NK.sum(dim=-1, keepdim=True)
    counted_N = torch.ones_like(probs_NE[:, 0]) if keep_N is None else keep_N.to(probs_NE.dtype)
    num_counted = counted_N.sum().clamp(min=1)
    assigned_NE = torch.zeros_like(probs_NE).scatter_(1, experts_NK, 1.0) * counted_N[:, None]
    load_E = assigned_NE.sum(0) / (num_counted * top_k)  # f_e
    mean_prob_E = (probs_NE * counted_N[:, None]).sum(0) / num_counted  # P_e
    balance_loss = num_experts * (load_E * mean_prob_E).sum()  # f_e is not differentiable, P_e is (Switch)
    z_loss = (torch.logsumexp(logits_NE, dim=-1).pow(2) * counted_N).sum() / num_counted
    return weights_NK, experts_NK, RouterStats(balance_loss, z_loss, load_E.detach())


class MoEFeedForward(nn.Module):
    """``y = shared(x) + sum_k w_k * expert_{e_k}(x)`` over the router's top-k experts of each token.

    Parameters: ``router.weight (E, D)``, ``experts.{e}`` (``MLP`` with ``up``/``down`` or ``GLU`` with
    ``gate``/``up``/``down``), ``shared`` (same kind, width ``num_shared_experts * hidden_dim``) when enabled.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        *,
        num_experts: int,
        top_k: int = 2,
        num_shared_experts: int = 0,
        glu: bool = True,
        activation: str = "silu",
        bias: bool = False,
        normalize_top_k: bool = True,
        balance_loss_weight: float = 1e-2,
        z_loss_weight: float = 1e-3,
    ):
        super().__init__()
        if num_experts < 1 or not 1 <= top_k <= num_experts:
            raise ValueError(f"need num_experts >= 1 and 1 <= top_k <= num_experts, got {num_experts}, {top_k}")
        if num_shared_experts < 0 or balance_loss_weight < 0 or z_loss_weight < 0:
            raise ValueError(
                f"num_shared_experts and the loss weights must be >= 0, got {num_shared_experts}, "
                f"{balance_loss_weight}, {z_loss_weight}"
            )
        make: Callable[[int], nn.Module] = (
            (lambda width: GLU(dim, width, activation=activation, bias=bias))
            if glu
            else (lambda width: MLP(dim, width, activation=activation, bias=bias))
        )
        self.num_experts, self.top_k, self.normalize_top_k = num_experts, top_k, normalize_top_k
        self.num_shared_experts = num_shared_experts
        self.balance_loss_weight, self.z_loss_weight = balance_loss_weight, z_loss_weight
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.experts = nn.ModuleList(make(hidden_dim) for _ in range(num_experts))
        self.shared = make(num_shared_experts * hidden_dim) if num_shared_experts else None
        self.last_stats: RouterStats | None = None

    def forward(self, x_D: Tensor, keep: Tensor | None = None) -> Tensor:
        """``x (..., D) -> (..., D)``; ``keep`` (same leading shape as x, bool) masks padding out of the stats."""
        x_ND = x_D.reshape(-1, x_D.shape[-1])
        logits_NE = F.linear(upcast(x_ND), upcast(self.router.weight))
        keep_N = None if keep is None else keep.reshape(-1)
        weights_NK, experts_NK, self.last_stats = route_top_k(
            logits_NE, top_k=self.top_k, normalize_top_k=self.normalize_top_k, keep_N=keep_N
        )
        # Dispatch: sort the N*K (token, expert) assignments by expert; expert e gets one contiguous run of rows.
        order_A = experts_NK.flatten().argsort(stable=True)  # A = N*K assignments
        token_A = order_A // self.top_k
        weight_A = weights_NK.flatten()[order_A]
        counts = torch.bincount(experts_NK.flatten(), minlength=self.num_experts).tolist()
        out_ND = torch.zeros_like(x_ND)
        for expert, token_R, weight_R in zip(self.experts, token_A.split(counts), weight_A.split(counts)):
            if token_R.numel():
                y_RD = expert(x_ND[token_R]) * weight_R[:, None].to(x_ND.dtype)
                out_ND.index_add_(0, token_R, y_RD)  # combine: each token sums its K weighted expert outputs
        if self.shared is not None:
            out_ND = out_ND + self.shared(x_ND)
        return out_ND.view_as(x_D)

    def extra_repr(self) -> str:
        return (
            f"experts={self.num_experts}, top_k={self.top_k}, shared={self.num_shared_experts}, "
            f"normalize_top_k={self.normalize_top_k}"
        )


def pop_router_losses(model: nn.Module) -> tuple[Tensor | None, dict[str, Tensor]]:
    """Weighted auxiliary loss and metrics of every ``MoEFeedForward`` that ran since the last call, then clear.

    Returns ``(None, {})`` when no MoE block ran. The loss is ``mean_layers(w_bal * balance + w_z * z)``; metrics
    (detached, means over layers): ``moe_balance_loss``, ``moe_z_loss`` and ``moe_max_load`` (largest expert share
    times E: 1.0 = perfectly balanced, E = every token on one expert).
    """
    losses, balance, z, max_load = [], [], [], []
    for module in model.modules():
        if isinstance(module, MoEFeedForward) and module.last_stats is not None:
            stats, module.last_stats = module.last_stats, None
            losses.append(module.balance_loss_weight * stats.balance_loss + module.z_loss_weight * stats.z_loss)
            balance.append(stats.balance_loss.detach())
            z.append(stats.z_loss.detach())
            max_load.append(stats.load_E.max() * module.num_experts)
    if not losses:
        return None, {}
    metrics = {
        "moe_balance_loss": torch.stack(balance).mean(),
        "moe_z_loss": torch.stack(z).mean(),
        "moe_max_load": torch.stack(max_load).mean(),
    }
    return torch.stack(losses).mean(), metrics
