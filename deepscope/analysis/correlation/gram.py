"""The Gram products of the correlation paths, in the activations' dtype (half into float32)."""

from __future__ import annotations

import torch

# Half-precision dtypes: widened to float32 on the CPU (half products are slow there)
# and for sums that must not overflow past 65504.
HALF = (torch.float16, torch.bfloat16)


def matmul(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """left·right in their dtype; half precision into float32 (no overflow past 65504)."""
    if left.dtype != right.dtype:  # e.g. float16 against float32 activations
        common = torch.promote_types(left.dtype, right.dtype)
        left, right = left.to(common), right.to(common)
    if left.dtype in HALF:
        try:  # CUDA: a half-precision product with float32 output
            return torch.mm(left, right, out_dtype=torch.float32)
        except (TypeError, RuntimeError, NotImplementedError):
            return left.float() @ right.float()
    return left @ right
