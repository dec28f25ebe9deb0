"""K-FAC factors of the GGN over adapter parameters (Laplace-LoRA's Kronecker structure).

Every adapter parameter is a linear map applied to every token t of every example n:

    LoRA  A  (r×n):  input x_t,            output-side gradient g_t = s·Bᵀ ∂ℓ/∂h_t
    LoRA  B  (m×r):  input A·x_t,          output-side gradient g_t = s·∂ℓ/∂h_t
    PoLAR Θ  (r×r):  input Vᵀ·x_t,         output-side gradient g_t = s·Uᵀ ∂ℓ/∂h_t

(h_t the adapted layer's output, s = α/r the LoRA scaling, x_t after the adapter's dropout,
which is the identity in eval mode). The GGN Σ_n J_nᵀ Λ_n J_n, Λ_n = diag(p_n) − p_n p_nᵀ, is
approximated per parameter by G ⊗ A with the *K-FAC-expand* rule for weight sharing
(Eschenhagen et al., NeurIPS 2023) that laplace-torch's default backend uses for
``hessian_structure="kron"`` (curvlinops ``KFACLinearOperator``, ``kfac_approx="expand"``,
exact type-2 GGN, i.e. ``fisher_type="type-2"``, no sampling):

    G = Σ_n Σ_t Σ_c g_{n,t,c} g_{n,t,c}ᵀ,   g_{n,t,c} = J_{n,t}ᵀ S_n[:, c],  S_n S_nᵀ = Λ_n
    A = (1/N) Σ_n (1/T_n) Σ_t x_{n,t} x_{n,t}ᵀ

with S_n = diag(√p_n) − p_n √p_nᵀ (column c is √p_c·(e_c − p_n)), so G costs C backward passes
per batch and is exact in Λ. Pad tokens (attention mask 0) are left out and T_n counts the real
tokens of example n; on unpadded batches this is laplace-torch's normalisation exactly (it divides
each batch's input moment by N·T for its sequence length T). The factors are stored as
laplace-torch's ``KronLaplace`` stores them: ``[G (out×out), A (in×in)]`` for the row-major
flattening of the (out, in) weight.

Multiple choice (a tokenized option batch with ``option_counts``, a per-option head): example n is
a question q whose n_q options are separate rows of the flat batch, and its logits (Q, K) are −inf
on the slots it lacks (p = 0 there, so S_q is 0 on them). The weight-sharing dimension of the
expand rule is then every real token of every option of the question: G sums g g ᵀ over all the
question's option rows and their tokens, each row carrying the output-side gradient of its own
option slot (row r = option k of q: g_{r,t,c} = S_q[k, c]·∂z_{q,k}/∂h_{r,t}, from the same C
backward passes through √Λ), and A weights each token by 1/T_q, T_q the real tokens of all of
q's options together (N = the number of questions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn

from bayeshead.backbones.option_groups import OPTION_COUNTS
from bayeshead.errors import UserInputError

__all__ = ["AdapterKFAC"]

_NAME = "adapter Laplace (kron)"
_ATTRS = ("lora_A", "lora_B", "theta")


def _token_weights(mask: Tensor, counts: Tensor | None) -> Tensor:
    """The weight of every token in A, (rows, tokens): 1/T_n on the real tokens of example n (a
    row; with option ``counts``, a question: all its option rows together), 0 on pads."""
    if counts is None:
        return mask / mask.sum(dim=1, keepdim=True).clamp_min(1.0)
    counts = torch.as_tensor(counts).long().reshape(-1).to(mask.device)
    if int(counts.sum()) != mask.shape[0]:
        raise UserInputError(
            f"{_NAME}: option counts sum to {int(counts.sum())} but the batch has {mask.shape[0]} option rows"
        )
    question = torch.repeat_interleave(torch.arange(counts.numel(), device=mask.device), counts)
    tokens = mask.new_zeros(counts.numel()).index_add(0, question, mask.sum(dim=1))  # T_q
    return mask / tokens[question].clamp_min(1.0).unsqueeze(1)


def _io(adapter: nn.Module, attr: str, x: Tensor | None, grad_out: Tensor | None) -> Tensor:
    """The input activations (given x) or output-side gradients (given ∂ℓ/∂h) of the linear map
    ``attr`` of ``adapter``, float64, (B, T, ·); see the module docstring."""
    s = float(adapter.scaling)
    if x is not None:
        if attr == "lora_A":
            return x
        if attr == "lora_B":
            return x @ adapter.lora_A.detach().to(torch.float64).T
        return x @ adapter.V.detach().to(torch.float64)
    assert grad_out is not None
    g = s * grad_out
    if attr == "lora_A":
        return g @ adapter.lora_B.detach().to(torch.float64)
    if attr == "lora_B":
        return g
    return g @ adapter.U.detach().to(torch.float64)


class AdapterKFAC:
    """Accumulates G and A of each adapter parameter over batches (see the module docstring).

    ``model`` is the backbone's ``nn.Module`` holding the adapters, ``names`` the dotted
    parameter names (``<module>.lora_A``, ``<module>.lora_B`` or ``<module>.theta``)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.names = names
        self.modules: dict[str, tuple[nn.Module, list[tuple[int, str]]]] = {}
        for i, name in enumerate(names):
            module_name, _, attr = name.rpartition(".")
            if attr not in _ATTRS:
                raise UserInputError(f"{_NAME}: K-FAC supports parameters {_ATTRS}, got {name!r}")
            adapter = model.get_submodule(module_name)
            self.modules.setdefault(module_name, (adapter, []))[1].append((i, attr))
        self.gradient_factors: list[Tensor | None] = [None] * len(names)
        self.input_factors: list[Tensor | None] = [None] * len(names)
        self._outputs: list[tuple[str, Tensor]] = []
        self._mask: Tensor | None = None  # set only during the recorded forward pass
        self._weights: Tensor | None = None  # the tokens' weights in A, with the mask

    def _device(self) -> torch.device:
        adapter = next(iter(self.modules.values()))[0]
        return next(adapter.parameters()).device

    def _add(self, store: list[Tensor | None], i: int, value: Tensor) -> None:
        store[i] = value if store[i] is None else store[i] + value

    def _forward_hook(
        self, module_name: str, module: nn.Module, args: tuple, output: Tensor
    ) -> None:
        mask, weights = self._mask, self._weights
        # outside the recorded forward pass (e.g. a checkpointing recompute during backward)
        if mask is None or weights is None:
            return
        x = args[0]
        if x.dim() != 3 or tuple(x.shape[:2]) != tuple(mask.shape):
            raise UserInputError(
                f"{_NAME}: adapter {module_name!r} got an input of shape {tuple(x.shape)}, expected "
                f"(batch, tokens, features) matching the attention mask {tuple(mask.shape)}"
            )
        with torch.no_grad():
            x = module.dropout(x).detach().to(torch.float64)
            adapter, params = self.modules[module_name]
            for i, attr in params:
                a = _io(adapter, attr, x, None)
                self._add(self.input_factors, i, torch.einsum("bt,bti,btj->ij", weights, a, a))
        self._outputs.append((module_name, output))

    @contextmanager
    def _recording(self, mask: Tensor, weights: Tensor) -> Iterator[None]:
        """Hooks on the adapters for the duration of one forward pass."""
        self._mask, self._weights, self._outputs = mask, weights, []
        handles = [
            adapter.register_forward_hook(partial(self._forward_hook, name))
            for name, (adapter, _) in self.modules.items()
        ]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            self._mask = self._weights = None

    def accumulate(
        self, logits_fn: Callable[[Mapping[str, Tensor]], Tensor], batch: Mapping[str, Tensor]
    ) -> Tensor:
        """One forward pass of ``logits_fn`` (batch -> (B, C) float64 logits, differentiable in
        the adapters) and C backward passes; adds the batch to G and A and returns the logits.
        For an option batch (``option_counts``) B is the number of questions and the logits are
        −inf on the slots a question lacks (see the module docstring).
        The caller puts the model in eval mode and makes the adapter parameters require grad."""
        device = self._device()
        mask = batch["attention_mask"].to(device=device, dtype=torch.float64)
        counts = batch.get(OPTION_COUNTS)
        with torch.enable_grad():
            with self._recording(mask, _token_weights(mask, counts)):
                logits = logits_fn(batch)
            outputs, self._outputs = self._outputs, []
            if not outputs:
                raise RuntimeError(
                    f"{_NAME}: the forward pass never called the adapters {list(self.modules)[:3]}"
                )
            if not logits.requires_grad:
                raise RuntimeError(f"{_NAME}: the logits do not depend on the adapter parameters")
            p = torch.softmax(logits.detach(), dim=-1)  # 0 on absent options
            root = p.sqrt()
            n_classes = logits.shape[1]
            scores = logits
            if counts is not None:  # −inf·0 would be NaN: absent slots carry no gradient anyway
                scores = logits.masked_fill(~torch.isfinite(logits.detach()), 0.0)
            for c in range(n_classes):
                column = root[:, c : c + 1] * (
                    nn.functional.one_hot(torch.tensor(c), n_classes).to(p) - p
                )
                grads = torch.autograd.grad(
                    (scores * column).sum(),
                    [out for _, out in outputs],
                    retain_graph=c + 1 < n_classes,
                    allow_unused=True,
                )
                for (module_name, out), grad in zip(outputs, grads, strict=True):
                    grad = torch.zeros_like(out) if grad is None else grad  # no path to the logits
                    grad = grad.detach().to(torch.float64) * mask.unsqueeze(-1)
                    adapter, params = self.modules[module_name]
                    for i, attr in params:
                        g = _io(adapter, attr, None, grad)
                        self._add(self.gradient_factors, i, torch.einsum("bti,btj->ij", g, g))
        return logits.detach()

    def factors(self, n_data: int) -> list[tuple[Tensor, Tensor]]:
        """[(G_l, A_l)] in the order of ``names``, A_l divided by the number of examples N."""
        if n_data <= 0:
            raise UserInputError(f"{_NAME}: needs at least one training example, got {n_data}")
        missing = [
            n
            for n, g, a in zip(self.names, self.gradient_factors, self.input_factors, strict=True)
            if g is None or a is None
        ]
        if missing:
            raise RuntimeError(
                f"{_NAME}: no curvature was collected for {missing[:3]}; were they used in the forward pass?"
            )
        return [
            (g, a / n_data) for g, a in zip(self.gradient_factors, self.input_factors, strict=True)
        ]  # type: ignore[operator]
