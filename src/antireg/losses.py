"""Loss transforms.

Flooding (Ishida et al. 2020, ICML): L_flood = |L − b| + b, descent above the
flood level b and ascent below it. It changes the loss, not the optimizer, so it
is a function; :class:`antireg.rules.Flooding` is the same formula as a rule.
"""

from __future__ import annotations

import torch


def flood(loss: torch.Tensor, b: float) -> torch.Tensor:
    """|loss − b| + b; gradient sign(L − b)·∇L."""
    if not b >= 0:
        raise ValueError(f"flood level b must be >= 0, got {b}")
    return (loss - b).abs() + b
