"""The shared comparison (tests/parity.py): relative to the expected values' size, and failing where it should."""

from __future__ import annotations

import pytest
import torch
from parity import REL, assert_logits_close, assert_logits_differ, relative_error


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_bound_scales_with_the_values(scale: float) -> None:
    """Float32 rounding noise of 2.3e-6 of the largest logit (ViT-B/16 on an Intel Xeon) passes at any logit size;
    an error of 3 REL fails at any size."""
    g = torch.Generator().manual_seed(0)
    expected = torch.randn(4, 1000, generator=g) * scale
    top = float(expected.abs().max())
    noise = torch.rand(expected.shape, generator=g) * 2 - 1  # in [-1, 1]
    assert_logits_close(expected + 2.3e-6 * top * noise, expected)
    off = expected.clone()
    off[0, 0] += 3 * REL * top
    assert relative_error(off, expected) == pytest.approx(3 * REL, rel=1e-3)
    with pytest.raises(AssertionError, match="max\\|diff\\| / max\\|expected\\|"):
        assert_logits_close(off, expected)


def test_differ_requires_a_wide_margin() -> None:
    expected = torch.linspace(-4, 4, 100)
    with pytest.raises(AssertionError, match="passed"):
        assert_logits_differ(expected * (1 + REL / 2), expected)  # within the bound
    with pytest.raises(AssertionError, match="only"):
        assert_logits_differ(expected * (1 + 5 * REL), expected)  # outside it, by less than MARGIN
    assert assert_logits_differ(expected * 1.01, expected) == pytest.approx(0.01, rel=1e-3)
