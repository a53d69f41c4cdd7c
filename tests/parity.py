"""The suite's one numerical comparison: two tensors equal up to a bound scaled to the size of the expected one.

A fixed absolute bound on float32 outputs passes or fails by chance across CPUs. Two correct computations of the same
network sum in different orders (GEMM blocking; AVX2, AVX-512 or AMX kernels; SDPA or an explicit softmax; oneDNN or
onnxruntime), and the difference grows with the values themselves. ViT-B/16's torchvision parity check measured
1.07e-5 against a 1e-5 bound on an Intel Xeon (AVX-512, AMX) with logits up to 4.6, and passed on AMD. Here the bound
is relative to the largest expected value::

    |actual - expected| <= rel * max|expected| + rel * |expected|     (elementwise)

so a ratio ``max|actual - expected| / max|expected|`` (:func:`relative_error`) up to ``rel`` always passes, and one
above ``2 * rel`` always fails.

``REL = 5e-5`` for float32 against float32 or float64. On an AMD EPYC (Zen 5, torch 2.14) the largest ratio of any such
check in the suite is 1.1e-6 (CSWin, SDPA against explicit attention at 100x130); ViT-B/16's parity check is 7.8e-7
there and 2.3e-6 on the Intel Xeon; the CNNs' torchvision checks are bit-identical (0). A real mistake is far larger:
one weight tensor scaled by 1.01 moves the logits by 1.6e-3 to 1e-2 of their size, swapped branches or an unmapped norm
by 0.06 to 0.7 (the ``test_perturbed_*`` tests of each family). 5e-5 sits near the geometric middle of 2.3e-6 (the
worst seen on any CPU) and 1e-3: about 20x headroom on either side (47x over this machine's worst).

``REL_ONNXRUNTIME = 1e-3`` for onnxruntime against PyTorch: it folds batch norm into the convolutions and runs its own
kernels. Measured here up to 3.8e-5 (GoogLeNet, whose batch norms rescale a small signal), 1.6e-6 for the transformers.
TorchScript runs PyTorch's kernels and keeps ``REL``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import chain

import torch

REL = 5e-5
REL_ONNXRUNTIME = 1e-3
# A deliberate mistake must miss the bound by at least this factor, so that a real one cannot hide under it.
MARGIN = 10.0

StateDict = Mapping[str, torch.Tensor]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|``, the number the bound is set against (inf for zero expected)."""
    diff = float((actual.detach() - expected.detach()).abs().max())
    scale = float(expected.detach().abs().max())
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def assert_logits_close(actual: torch.Tensor, expected: torch.Tensor, *, rel: float = REL) -> None:
    """``torch.testing.assert_close`` with ``rtol=rel`` and ``atol=rel * max|expected|`` (see the module docstring).

    Args:
        actual: the tensor under test (ours, the exported file's, the float32 path).
        expected: the reference (torchvision's, PyTorch's, a float64 recomputation); it sets the scale.
        rel: the bound relative to the largest expected value.
    """
    scale = float(expected.detach().abs().max())
    torch.testing.assert_close(
        actual.detach(), expected.detach(), rtol=rel, atol=rel * scale,
        msg=lambda m: f"{m}\nmax|diff| / max|expected| = {relative_error(actual, expected):.3g} (rel = {rel:g})",
    )


def assert_logits_differ(actual: torch.Tensor, expected: torch.Tensor, *, rel: float = REL,
                         margin: float = MARGIN) -> float:
    """:func:`assert_logits_close` raises, and the relative error is at least ``margin`` times its bound.

    Returns:
        The relative error.
    """
    try:
        assert_logits_close(actual, expected, rel=rel)
    except AssertionError:
        pass
    else:
        raise AssertionError(f"assert_logits_close passed (relative error {relative_error(actual, expected):.3g})")
    err = relative_error(actual, expected)
    assert err >= margin * rel, f"fails by only {err / rel:.1f}x the bound (relative error {err:.3g})"
    return err


# Realistic converter mistakes, each a function of a converted state dict returning a new one (the input is kept).
Perturbation = Callable[[StateDict], dict[str, torch.Tensor]]


def scaled(key: str, factor: float = 1.01) -> Perturbation:
    """One weight tensor slightly wrong: all of it multiplied by ``factor``."""
    return lambda sd: {**sd, key: sd[key] * factor}


def one_element(key: str) -> Perturbation:
    """One element of one tensor wrong: its largest-magnitude weight with the sign flipped."""

    def apply(sd: StateDict) -> dict[str, torch.Tensor]:
        t = sd[key].clone()
        flat = t.view(-1)
        i = int(flat.abs().argmax())
        flat[i] = -flat[i]
        return {**sd, key: t}

    return apply


def swapped(key_a: str, key_b: str) -> Perturbation:
    """Two tensors of the same shape exchanged (two branches, or two sub-blocks, mapped the wrong way round)."""
    return lambda sd: {**sd, key_a: sd[key_b], key_b: sd[key_a]}


def swapped_chunks(key: str, i: int, j: int, chunks: int = 3) -> Perturbation:
    """Chunks ``i`` and ``j`` of a tensor's first dimension exchanged: q and k of a fused qkv projection."""

    def apply(sd: StateDict) -> dict[str, torch.Tensor]:
        parts = list(sd[key].chunk(chunks))
        parts[i], parts[j] = parts[j], parts[i]
        return {**sd, key: torch.cat(parts)}

    return apply


def combined(*perturbations: Perturbation) -> Perturbation:
    """Several perturbations applied in turn (a fused projection's weight and bias, a norm's four tensors)."""

    def apply(sd: StateDict) -> dict[str, torch.Tensor]:
        out = dict(sd)
        for p in perturbations:
            out = p(out)
        return out

    return apply


def norm_identity(prefix: str) -> Perturbation:
    """A normalisation layer left at its init, as if its keys were not mapped: affine weight 1 and bias 0, and for
    batch norm running statistics (0, 1), which makes it the identity."""
    init = {"weight": torch.ones_like, "bias": torch.zeros_like, "running_mean": torch.zeros_like,
            "running_var": torch.ones_like}

    def apply(sd: StateDict) -> dict[str, torch.Tensor]:
        changes = {f"{prefix}.{k}": fn(sd[f"{prefix}.{k}"]) for k, fn in init.items() if f"{prefix}.{k}" in sd}
        assert changes, f"no normalisation parameters under {prefix!r}"
        return {**sd, **changes}

    return apply


@torch.no_grad()
def randomise_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every LayerNorm / BatchNorm non-trivial affine parameters (and BN statistics), as trained weights have:
    at their init (weight 1, bias 0) a norm left unmapped by a converter would change nothing."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm | torch.nn.modules.batchnorm._BatchNorm) and m.weight is not None:
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def check_perturbation(build: Callable[[], torch.nn.Module], state: StateDict, perturb: Perturbation,
                       x: torch.Tensor, expected: torch.Tensor) -> float:
    """Load ``perturb(state)`` strictly into ``build()``'s model, run ``x`` in eval mode and require its logits to miss
    ``expected`` (the reference's) by :data:`MARGIN` times the bound. Returns the relative error.

    ``build`` may make the model on the meta device (it is then loaded with ``assign``), but only for models whose
    every buffer is in the state dict: a buffer left on the meta device computes garbage instead of failing.
    """
    model = build()
    model.load_state_dict(perturb(state), strict=True, assign=True)
    assert not any(t.is_meta for t in chain(model.parameters(), model.buffers())), "a tensor left on the meta device"
    with torch.no_grad():
        return assert_logits_differ(model.eval()(x), expected)
