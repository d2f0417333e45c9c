"""The shipped ``distill.method`` presets: each expands the flat ``distill.*`` fields (``kd_alpha``,
``lsp_lambda``, ``kernel``, ``sigma``, ...) into term specs of the loss registry (:mod:`.registry`), so every
config written before ``distill.terms`` existed still builds the same objective.

==============================  =======================================================================
preset                          objective
==============================  =======================================================================
``scratch``                     ``CE``
``kd``                          ``(1 − α)·CE + α·L_KD`` (Hinton; T, α)
``fitnet``                      ``CE + β_fit·Σ_l w_l·L_FitNet(l)``
``at``                          ``CE + β_at/2·Σ_l w_l·L_AT(l)`` (Zagoruyko & Komodakis' β/2)
``lsp``                         ``CE + λ·Σ_l w_l·L_LSP(l)`` over the teacher ∪ student virtual edges
``lsp+kd``                      ``(1 − α)·CE + α·L_KD + λ·Σ_l w_l·L_LSP(l)``
``hkd``                         ``CE + β_hkd·L_HOL`` (holistic KD: instance graphs, TAGCN, InfoNCE)
``hkd+kd``                      ``(1 − α)·CE + α·L_KD + β_hkd·L_HOL``
``layer_attention``, ``stride``  ``CE + β·mean(α ⊙ (E + λ_S·L_LSP))`` over every layer pair
==============================  =======================================================================

``l`` runs over the (teacher layer, student layer) pairs of ``distill.layer_map``; layer attention needs no map.
"""

from __future__ import annotations

from typing import Any

from ..config import DistillSection
from .registry import PRESETS, register_preset

Spec = dict[str, Any]


def ce(weight: float = 1.0) -> Spec:
    return {"loss": "ce", "weight": weight}


def kd(settings: DistillSection) -> Spec:
    return {"loss": "kd", "weight": settings.kd_alpha, "temperature": settings.kd_temperature}


def lsp_kernel(s: DistillSection) -> Spec:
    """The LSP kernel options, shared by ``lsp`` and the structural term of ``layer_attention``."""
    return {
        "kernel": s.kernel,
        "sigma": s.sigma,
        "degree": s.degree,
        "coef": s.coef,
        "sigma_rule": s.sigma_rule,
        "normalize": s.lsp_normalize,
        "impl": s.lsp_impl,
        "direction": s.lsp_direction,
    }


def lsp(s: DistillSection) -> Spec:
    return {"loss": "lsp", "weight": s.lsp_lambda, **lsp_kernel(s), "centres": s.lsp_centres}


def hkd(s: DistillSection) -> Spec:
    return {
        "loss": "hkd",
        "weight": s.hkd_weight,
        "dim": s.hkd_dim,
        "k": s.hkd_k,
        "queue": s.hkd_queue,
        "temperature": s.hkd_temperature,
    }


@register_preset("scratch")
def scratch_preset(s: DistillSection) -> list[Spec]:
    """No teacher: cross-entropy alone."""
    return [ce()]


@register_preset("kd")
def kd_preset(s: DistillSection) -> list[Spec]:
    """Hinton's KD: ``(1 − kd_alpha)·CE + kd_alpha·L_KD`` at ``kd_temperature``."""
    return [ce(1 - s.kd_alpha), kd(s)]


@register_preset("fitnet")
def fitnet_preset(s: DistillSection) -> list[Spec]:
    """FitNet hints: ``CE + fitnet_weight·Σ_l w_l·L_FitNet(l)``."""
    return [ce(), {"loss": "fitnet", "weight": s.fitnet_weight}]


@register_preset("at")
def at_preset(s: DistillSection) -> list[Spec]:
    """Attention transfer: ``CE + at_weight/2·Σ_l w_l·L_AT(l)``."""
    return [ce(), {"loss": "at", "weight": s.at_weight / 2}]


@register_preset("lsp")
def lsp_preset(s: DistillSection) -> list[Spec]:
    """LSP (Yang et al. 2020): ``CE + lsp_lambda·Σ_l w_l·L_LSP(l)`` with ``kernel``, ``sigma``, ...; the default."""
    return [ce(), lsp(s)]


@register_preset("lsp+kd")
def lsp_kd_preset(s: DistillSection) -> list[Spec]:
    """``(1 − kd_alpha)·CE + kd_alpha·L_KD + lsp_lambda·Σ_l w_l·L_LSP(l)``."""
    return [ce(1 - s.kd_alpha), kd(s), lsp(s)]


@register_preset("hkd")
def hkd_preset(s: DistillSection) -> list[Spec]:
    """Holistic KD (Zhou et al. 2021): ``CE + hkd_weight·L_HOL``."""
    return [ce(), hkd(s)]


@register_preset("hkd+kd")
def hkd_kd_preset(s: DistillSection) -> list[Spec]:
    """``(1 − kd_alpha)·CE + kd_alpha·L_KD + hkd_weight·L_HOL``."""
    return [ce(1 - s.kd_alpha), kd(s), hkd(s)]


@register_preset("layer_attention")
def layer_attention_preset(s: DistillSection) -> list[Spec]:
    """Layer attention: ``CE + stride_weight·mean(α ⊙ (w_E·E + w_S·L_LSP))`` over every layer pair, with
    ``stride_dim``, ``stride_rank``, ``stride_embedding_weight``, ``stride_structural_weight`` and the LSP kernel
    fields (the ``stride_*`` field names are kept from the method's first name)."""
    term = {
        "loss": "layer_attention",
        "weight": s.stride_weight,
        "dim": s.stride_dim,
        "rank": s.stride_rank,
        "embedding_weight": s.stride_embedding_weight,
        "structural_weight": s.stride_structural_weight,
        **lsp_kernel(s),
    }
    return [ce(), term]


@register_preset("stride")
def stride_preset(s: DistillSection) -> list[Spec]:
    """``layer_attention`` under its first name (after STRIDE), accepted so that configs, campaign plans and
    records written with ``method: stride`` keep building the same objective."""
    return layer_attention_preset(s)


def preset_terms(settings: DistillSection) -> list[Spec]:
    """``distill.terms`` when set (with ``{loss: ce, weight: 1}`` first when they hold no ``ce`` term), else the
    expansion of the ``distill.method`` preset (default ``lsp``)."""
    if settings.terms is not None:
        terms = [dict(spec) for spec in settings.terms]
        return terms if any(spec.get("loss") == "ce" for spec in terms) else [ce(), *terms]
    name = settings.preset
    if name not in PRESETS:
        raise ValueError(f"distill.method must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name](settings)
