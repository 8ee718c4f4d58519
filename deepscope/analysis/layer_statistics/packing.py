"""Layer statistics' sums as one flat float64 vector, to combine them across ranks.

Under torch.distributed each rank sums what its own batch showed; the ranks
all-gather these vectors and merge them (`ActivationSums.merge`,
`CovarianceSums.merge`: exact algebra), so the logged statistics are those
of the global batch. Counts travel as float64, exact below 2⁵³.

Layout of one row: [key, channels, bounded, has_covariance] then the
activation sums (7 scalars and channel_active [C]) and, when present, the
covariance sums (count, mean [C], comoment [C·C]). A vector is its row
count followed by its rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from deepscope.analysis.layer_statistics.activations import ActivationSums
from deepscope.analysis.layer_statistics.covariance import CovarianceSums

_SCALARS = ("elements", "non_finite", "zeros", "saturated", "total", "m2", "max_abs")
_COUNTS = ("elements", "non_finite", "zeros", "saturated")


def pack_rows(
    rows: Sequence[tuple[int, ActivationSums, CovarianceSums | None]],
) -> torch.Tensor:
    """Rows of (key, sums, covariance or None) as one float64 host vector.

    key: an int that names the row the same way on every rank (below 2⁵³).
    """
    parts = [torch.tensor([float(len(rows))], dtype=torch.float64)]
    for key, sums, covariance in rows:
        head = [
            float(key),
            float(sums.channels),
            float(sums.bounded),
            float(covariance is not None),
        ]
        parts.append(torch.tensor(head, dtype=torch.float64))
        parts.append(
            torch.stack([getattr(sums, name).to(torch.float64).cpu() for name in _SCALARS])
        )
        parts.append(sums.channel_active.to(torch.float64).cpu())
        if covariance is not None:
            parts.append(covariance.count.to(torch.float64).cpu().reshape(1))
            parts.append(covariance.mean.to(torch.float64).cpu())
            parts.append(covariance.comoment.to(torch.float64).cpu().reshape(-1))
    return torch.cat(parts)


def unpack_rows(
    vector: torch.Tensor, device: torch.device | None = None
) -> list[tuple[int, ActivationSums, CovarianceSums | None]]:
    """The rows `pack_rows` packed, their tensors on `device` (default: the CPU).

    Raises ValueError for a vector that does not hold whole rows.
    """
    values = vector.to(torch.float64).cpu()
    device = device or torch.device("cpu")
    position = 0

    def take(n: int) -> torch.Tensor:
        nonlocal position
        if n < 0 or position + n > values.numel():
            raise ValueError("a packed layer-statistics vector ends inside a row")
        part = values[position : position + n]
        position += n
        return part

    rows = []
    for _ in range(int(take(1)[0])):
        key, channels, bounded, has_covariance = (float(v) for v in take(4))
        channels = int(channels)
        scalars = dict(zip(_SCALARS, take(len(_SCALARS))))
        fields = {
            name: (value.to(torch.int64) if name in _COUNTS else value.clone()).to(device)
            for name, value in scalars.items()
        }
        sums = ActivationSums(
            **fields,
            channel_active=take(channels).to(torch.int64).to(device),
            bounded=bool(bounded),
        )
        covariance = None
        if has_covariance:
            count = take(1)[0].to(torch.int64).to(device)
            mean = take(channels).clone().to(device)
            comoment = take(channels * channels).reshape(channels, channels).clone().to(device)
            covariance = CovarianceSums(count=count, mean=mean, comoment=comoment)
        rows.append((int(key), sums, covariance))
    if position != values.numel():
        raise ValueError("a packed layer-statistics vector holds more than its rows")
    return rows
