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

import torch

REL = 5e-5
REL_ONNXRUNTIME = 1e-3
# A deliberate mistake must miss the bound by at least this factor, so that a real one cannot hide under it.
MARGIN = 10.0


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
