"""Bayesian LoRA (BLoB, Wang et al., NeurIPS 2024): a Gaussian on A, B deterministic.

    h = W0·x + (α/r)·B·(A·x),   q(A) = N(M, diag σ²),   σ = ρ² (element-wise),   B a point value.

Parameters: ``lora_A`` holds the mean M (r × n, the same name and place as in
:class:`~bayeshead.adapters.lora.LoRALinear`, so a plain LoRA checkpoint maps onto it),
``lora_B`` (m × r) and ``lora_A_rho`` ρ (r × n). σ = ρ² is ≥ 0 whatever sign ρ takes during
training; ρ starts uniform in [ε/√2, ε] (ε = ``init_eps``, 0.05 in the reference), i.e.
σ ∈ [ε²/2, ε²], as the reference implementation does (``modelwrappers/blob.py``,
``_wrap_lora_layer``, ``nn.init.uniform_(rho, eps/sqrt(2), eps)``; its ε < 0 branch, a softplus
parameterization, is not reproduced).

Sampling (``module.sampling = True``; off by default): each forward pass draws ONE noise matrix
E ~ N(0, 1) of shape (r, n), ΔA = σ ⊙ E, and for every token row x (…, n) random ±1 sign vectors
s_in (…, n) and s_out (…, r) (flipout, Wen et al. 2018); the rank-r activation becomes

    x·Mᵀ + ((x ⊙ s_in)·ΔAᵀ) ⊙ s_out

before B and the scaling. For one row the added noise is exactly Gaussian with independent
coordinates, so Var[out_j] = (α/r)² Σ_k B_jk² Σ_i x_i² σ_ki² (what a fresh A ~ q per row gives),
while rows of one forward pass are uncorrelated. The draws come from torch's global RNG (CPU or
CUDA, wherever the factors live; seed it, e.g. inside ``torch.random.fork_rng``) unless the
attribute ``generator`` is set to a ``torch.Generator``. The adapter's dropout is applied once
and shared by the mean and the noise path (the reference calls its dropout module twice, drawing
two masks; with the default dropout 0 both agree). ``sampling`` is independent of
``train()``/``eval()``. With ``sampling = False`` the module computes exactly what a
``LoRALinear`` with A = M computes (same operations, bit for bit).

Mixed precision as in :class:`~bayeshead.adapters._lowrank.LowRankAdapter`: under a bf16/fp16
base layer M, B and ρ are fp32 and the noise is drawn and applied in fp32.

``merge()`` folds the mean update (α/r)·B·M into the base weight and refuses while ``sampling``
is on (a merged layer cannot add per-forward noise); a forward pass of a merged module with
``sampling`` on is refused too.

KL(q(A) ‖ N(0, β² I)) = Σ_ij [log β − log σ_ij + (σ_ij² + M_ij²)/(2β²) − ½], β = ``prior_std``
(0.2 in the reference), computed in float64 and differentiable in M and ρ. The reference adds
a stabiliser (``kl_div_stable``, eps = 1e-6: log(β+eps) − log(σ+eps) + (σ²+M²)/(2β²+eps) − ½);
pass ``eps=1e-6`` to :meth:`BayesianLoRALinear.kl_divergence` to reproduce it; the default is the
exact closed form (+inf where σ = 0).

Model-level helpers: :func:`bayesianize_lora` (replace LoRA modules in place),
:func:`bayesian_lora_modules`, :func:`lora_sampling` (a context manager for the ``sampling``
flags) and :func:`bayesian_lora_kl`. The module is not registered as an adapter kind: inject
``"lora"`` adapters, then call :func:`bayesianize_lora` (also before loading a saved state,
whose keys include ``lora_A_rho``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from bayeshead.adapters._lowrank import LowRankAdapter
from bayeshead.adapters.config import LoRAConfig
from bayeshead.adapters.lora import LoRALinear
from bayeshead.errors import InputTypeError, UserInputError
from bayeshead.manifolds.geometry import Geometry

__all__ = [
    "BayesianLoRALinear",
    "bayesianize_lora",
    "bayesian_lora_modules",
    "lora_sampling",
    "bayesian_lora_kl",
]


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise UserInputError(f"BayesianLoRALinear: {name} must be a positive finite number, got {value}")
    return value


def _draw(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None, kind: str) -> Tensor:
    """Standard normal (``kind="normal"``), uniform [0, 1) or ±1 signs, dtype/device of ``like``;
    from ``generator`` when given (drawn on its device, then moved), else the global RNG."""
    device = like.device if generator is None else generator.device
    kw = {"device": device, "generator": generator}
    if kind == "normal":
        out = torch.randn(shape, dtype=like.dtype, **kw)
    elif kind == "uniform":
        out = torch.rand(shape, dtype=like.dtype, **kw)
    else:  # signs
        out = torch.randint(0, 2, shape, dtype=torch.int8, **kw).to(like.dtype).mul_(2).sub_(1)
    return out.to(like.device)


class BayesianLoRALinear(LoRALinear):
    """LoRA with q(A) = N(M, diag σ²), σ = ρ², B deterministic; flipout noise when ``sampling``.

    ``BayesianLoRALinear(base_layer, config, prior_std=β, init_eps=ε, generator=g)``: M is
    Kaiming-uniform and B = 0 as in LoRA (drawn exactly as ``LoRALinear`` draws them, from the
    global RNG or ``g``), then ρ ~ U[ε/√2, ε]. ``generator`` serves these initial draws only; it
    is not kept. Set the attribute ``generator`` afterwards to take the sampling noise from a
    dedicated ``torch.Generator`` (on the factors' device or the CPU) instead of the global RNG.
    """

    sampling: bool
    generator: torch.Generator | None

    def __init__(
        self,
        base_layer: nn.Module,
        config: LoRAConfig | None = None,
        *,
        prior_std: float = 0.2,
        init_eps: float = 0.05,
        generator: torch.Generator | None = None,
    ) -> None:
        self._setup(base_layer, config or LoRAConfig(), prior_std, init_eps)
        with torch.no_grad():  # as LoRALinear: Kaiming-uniform, a = √5
            if generator is None or generator.device == self.lora_A.device:
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=generator)
            else:
                tmp = torch.empty(self.lora_A.shape, dtype=self.lora_A.dtype, device=generator.device)
                self.lora_A.copy_(nn.init.kaiming_uniform_(tmp, a=math.sqrt(5), generator=generator))
        self.reset_rho(generator=generator)

    def _setup(self, base_layer: nn.Module, config: LoRAConfig, prior_std: float, init_eps: float) -> None:
        """Everything but the random draws (so that :meth:`from_lora` spends none on M)."""
        prior_std = _check_positive("prior_std", prior_std)
        init_eps = _check_positive("init_eps", init_eps)
        LowRankAdapter.__init__(self, base_layer, config)
        self.prior_std = prior_std
        self.init_eps = init_eps
        kw = self._factor_kwargs
        self.lora_A = nn.Parameter(torch.empty(self.rank, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.rank, **kw))
        self.lora_A_rho = nn.Parameter(torch.empty(self.rank, self.in_features, **kw))
        self.sampling = False
        self.generator = None

    @classmethod
    def from_lora(
        cls,
        lora: LoRALinear,
        *,
        prior_std: float = 0.2,
        init_eps: float = 0.05,
        generator: torch.Generator | None = None,
    ) -> BayesianLoRALinear:
        """A Bayesian LoRA on the same (shared, not copied) base layer, with M = ``lora.lora_A``
        and B = ``lora.lora_B`` (values copied into new parameters; ``requires_grad`` flags
        kept), the same rank, α and dropout probability, and a fresh ρ ~ U[ε/√2, ε] (the only
        random draw). The new module's outputs equal ``lora``'s while ``sampling`` is off.
        Refuses a merged ``lora`` and adapters that are not LoRA (PoLAR)."""
        if not isinstance(lora, LoRALinear):
            raise InputTypeError(
                f"BayesianLoRALinear.from_lora needs a LoRALinear, got {type(lora).__name__}; "
                "only LoRA adapters (a Gaussian on A, B·A updates) can be Bayesianized this way"
            )
        if lora.merged:
            raise UserInputError(
                "BayesianLoRALinear.from_lora: the LoRA adapter is merged into its base weight; "
                "call unmerge() first (the mean M must stay a separate factor)"
            )
        p = lora.dropout.p if isinstance(lora.dropout, nn.Dropout) else 0.0
        config = LoRAConfig(rank=lora.rank, alpha=lora.alpha, dropout=p)
        new = cls.__new__(cls)
        new._setup(lora.base_layer, config, prior_std, init_eps)
        with torch.no_grad():
            new.lora_A.copy_(lora.lora_A)
            new.lora_B.copy_(lora.lora_B)
        new.lora_A.requires_grad_(lora.lora_A.requires_grad)
        new.lora_B.requires_grad_(lora.lora_B.requires_grad)
        new.reset_rho(generator=generator)
        new.train(lora.training)
        return new

    # -- the variational parameters -----------------------------------------------------
    @torch.no_grad()
    def reset_rho(self, init_eps: float | None = None, *, generator: torch.Generator | None = None) -> None:
        """ρ ← U[ε/√2, ε] (ε = ``init_eps`` or the module's), trainable."""
        eps = self.init_eps if init_eps is None else _check_positive("init_eps", init_eps)
        u = _draw(tuple(self.lora_A_rho.shape), self.lora_A_rho, generator, "uniform")
        self.lora_A_rho.copy_(eps / math.sqrt(2) + (eps - eps / math.sqrt(2)) * u)
        self.lora_A_rho.requires_grad_(True)

    def std(self) -> Tensor:
        """σ = ρ² (r × n), in the factors' dtype; differentiable in ρ."""
        return self.lora_A_rho * self.lora_A_rho

    @torch.no_grad()
    def set_std(self, std: Tensor | float, *, trainable: bool) -> None:
        """ρ ← √σ for a given σ ≥ 0 (broadcast to r × n); ``trainable=False`` freezes ρ
        (TFB: a fixed σ; the optimizer factories then leave ρ out)."""
        target = torch.as_tensor(std, dtype=torch.float64, device=self.lora_A_rho.device)
        try:
            target = torch.broadcast_to(target, self.lora_A_rho.shape)
        except RuntimeError:
            raise UserInputError(
                f"set_std: σ of shape {tuple(target.shape)} does not broadcast to A's shape "
                f"{tuple(self.lora_A_rho.shape)} (rank × in_features)"
            ) from None
        if not bool(torch.isfinite(target).all()) or bool((target < 0).any()):
            raise UserInputError("set_std: σ must be finite and ≥ 0 everywhere")
        self.lora_A_rho.copy_(target.sqrt().to(self.lora_A_rho.dtype))
        self.lora_A_rho.requires_grad_(bool(trainable))

    def kl_divergence(self, *, eps: float = 0.0) -> Tensor:
        """KL(q(A) ‖ N(0, β² I)) = Σ [log β − log σ + (σ² + M²)/(2β²) − ½] as a float64 scalar,
        differentiable in M (``lora_A``) and ρ. ``eps > 0`` adds the reference's stabiliser:
        log(β+eps) − log(σ+eps) + (σ² + M²)/(2β² + eps) − ½."""
        mean = self.lora_A.to(torch.float64)
        rho = self.lora_A_rho.to(torch.float64)
        sigma = rho * rho
        beta = self.prior_std
        kl = (
            math.log(beta + eps)
            - torch.log(sigma + eps)
            + (sigma * sigma + mean * mean) / (2.0 * beta * beta + eps)
            - 0.5
        )
        return kl.sum()

    # -- forward ------------------------------------------------------------------------
    def _delta_path(self, x: Tensor) -> Tensor:
        h = x @ self.lora_A.T
        if self.sampling:
            h = h + self._flipout_noise(x)
        return h @ self.lora_B.T

    def _flipout_noise(self, x: Tensor) -> Tensor:
        """((x ⊙ s_in)·(σ ⊙ E)ᵀ) ⊙ s_out with one E (r × n) per call and signs per row."""
        gen = self.generator
        noise_a = self.std() * _draw(tuple(self.lora_A_rho.shape), self.lora_A_rho, gen, "normal")
        s_in = _draw(tuple(x.shape), x, gen, "signs")
        s_out = _draw((*x.shape[:-1], self.rank), x, gen, "signs")
        return ((x * s_in) @ noise_a.T) * s_out

    def forward(self, x: Tensor) -> Tensor:
        if self.merged and self.sampling:
            raise RuntimeError(
                "BayesianLoRALinear: sampling is on but the mean update is merged into the base "
                "weight, so no noise could be added; call unmerge() or turn sampling off"
            )
        return super().forward(x)

    @torch.no_grad()
    def merge(self) -> None:
        """W ← W + (α/r)·B·M (the mean update); refused while ``sampling`` is on."""
        if self.sampling and not self.merged:
            raise RuntimeError(
                "BayesianLoRALinear.merge: sampling is on; merging would drop the noise. Turn "
                "sampling off (e.g. leave the lora_sampling(model, True) block) to merge the mean"
            )
        super().merge()

    def parameter_geometry(self) -> dict[str, Geometry]:
        return {"lora_A": "euclidean", "lora_B": "euclidean", "lora_A_rho": "euclidean"}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, prior_std={self.prior_std}, sampling={self.sampling}"


# -- model-level helpers --------------------------------------------------------------------
def bayesian_lora_modules(model: nn.Module) -> dict[str, BayesianLoRALinear]:
    """``{module name: module}`` for every :class:`BayesianLoRALinear` in ``model`` (module order)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, BayesianLoRALinear)}


def _require_bayesian(model: nn.Module, what: str) -> dict[str, BayesianLoRALinear]:
    modules = bayesian_lora_modules(model)
    if not modules:
        raise UserInputError(
            f"{what}: {type(model).__name__} holds no BayesianLoRALinear module; inject LoRA "
            "adapters and call bayeshead.adapters.bayesianize_lora(model) first"
        )
    return modules


def bayesianize_lora(
    model: nn.Module,
    *,
    prior_std: float = 0.2,
    init_eps: float = 0.05,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Replace every ``LoRALinear`` of ``model`` that is not yet Bayesian by
    ``BayesianLoRALinear.from_lora(...)`` (in place; base layers shared, M and B values kept,
    fresh ρ drawn in module order) and return the replaced names (sorted).

    Raises ``ValueError`` — before replacing anything — when ``model`` holds adapters that are
    not LoRA (PoLAR), merged LoRA adapters, or no plain LoRA adapter at all. The replaced
    modules carry new parameter objects: build the optimizer afterwards."""
    from bayeshead.adapters.modules import adapter_modules

    adapters = adapter_modules(model)
    other = [f"{n} ({type(a).__name__})" for n, a in adapters.items() if not isinstance(a, LoRALinear)]
    if other:
        raise UserInputError(
            f"bayesianize_lora: the model holds adapters that are not LoRA: {', '.join(other[:10])}. "
            "BLoB/TFB put a Gaussian on LoRA's A factor; inject adapter kind 'lora' instead"
        )
    targets = {n: a for n, a in adapters.items() if not isinstance(a, BayesianLoRALinear)}
    if not targets:
        already = [n for n in adapters]
        raise UserInputError(
            "bayesianize_lora: no plain LoRA adapter to Bayesianize"
            + (f"; these are Bayesian already: {', '.join(already[:10])}" if already else
               f"; {type(model).__name__} holds no adapters (inject_adapters with kind 'lora' first)")
        )
    merged = [n for n, a in targets.items() if a.merged]
    if merged:
        raise UserInputError(
            f"bayesianize_lora: merged LoRA adapters {', '.join(merged[:10])}; call "
            "bayeshead.adapters.unmerge_adapters(model) first"
        )
    built = {
        n: BayesianLoRALinear.from_lora(a, prior_std=prior_std, init_eps=init_eps, generator=generator)
        for n, a in targets.items()
    }
    for name, module in built.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module)
    return sorted(built)


@contextmanager
def lora_sampling(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Set ``sampling = enabled`` on every :class:`BayesianLoRALinear` of ``model`` for the
    block; each module's previous flag is restored on exit (also on an exception).
    Raises ``ValueError`` when ``model`` holds none (silently deterministic output otherwise)."""
    modules = _require_bayesian(model, "lora_sampling")
    previous = {name: m.sampling for name, m in modules.items()}
    try:
        for m in modules.values():
            m.sampling = bool(enabled)
        yield
    finally:
        for name, m in modules.items():
            m.sampling = previous[name]


def bayesian_lora_kl(model: nn.Module, *, eps: float = 0.0) -> Tensor:
    """Σ over the Bayesian LoRA modules of KL(q(A) ‖ N(0, β² I)), a float64 scalar
    (differentiable; ``eps`` as in :meth:`BayesianLoRALinear.kl_divergence`)."""
    modules = _require_bayesian(model, "bayesian_lora_kl")
    total = torch.zeros((), dtype=torch.float64, device=next(iter(modules.values())).lora_A.device)
    for m in modules.values():
        total = total + m.kl_divergence(eps=eps).to(total.device)
    return total
