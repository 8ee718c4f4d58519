"""What every group of routes needs: the data provider, the series catalog, the sampling hint."""

from __future__ import annotations

import dataclasses

from deepscope.tb_plugin import series


@dataclasses.dataclass(frozen=True)
class RouteContext:
    data_provider: object  # tensorboard.data.provider.DataProvider
    catalog: series.SeriesCatalog  # series metadata, remembered; .find(ctx, exp, run, tag, kind)
    downsample: int | None  # samples per series to read (None or 0: all kept)
