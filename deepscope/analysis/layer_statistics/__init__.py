"""Layer statistics: activations, gradients and weights of every layer, as mergeable sums.

Per module output tensor (`outputs`: which tensors, their rows, the channel
dim), sums of its values (`activations`: count, mean, std, RMS, max |a|,
zero, saturated (`bounds`), non-finite, dead channels); per layer, its
channel covariance's eigenvalues and three metrics (`covariance`); per
parameter, gradient and weight norms (`parameters`). Every sum stays a
device tensor (no host sync) and merges exactly, so batches and ranks can be
combined.
"""

from deepscope.analysis.layer_statistics.activations import (
    ACTIVATION_STATISTICS,
    COVARIANCE_STATISTICS,
    STATISTICS,
    ActivationSums,
    ActivationTable,
    activation_statistics,
    activation_sums,
    activation_table,
)
from deepscope.analysis.layer_statistics.bounds import (
    DEFAULT_TOLERANCE,
    saturation_bounds,
    saturation_thresholds,
)
from deepscope.analysis.layer_statistics.covariance import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_VARIANCE_THRESHOLD,
    CovarianceSums,
    covariance_eigenvalues,
    covariance_eigenvalues_many,
    covariance_metrics,
    covariance_sums,
    delve_saturation,
    effective_dimension,
    effective_rank,
    sample_rows,
)
from deepscope.analysis.layer_statistics.outputs import (
    MAX_DEPTH,
    channel_dim_of,
    output_tensors,
    row_name,
)
from deepscope.analysis.layer_statistics.packing import pack_rows, unpack_rows
from deepscope.analysis.layer_statistics.parameters import (
    PARAMETER_STATISTICS,
    parameter_norms,
    parameter_table,
)

__all__ = [
    "ACTIVATION_STATISTICS",
    "COVARIANCE_STATISTICS",
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_TOLERANCE",
    "DEFAULT_VARIANCE_THRESHOLD",
    "MAX_DEPTH",
    "PARAMETER_STATISTICS",
    "STATISTICS",
    "ActivationSums",
    "ActivationTable",
    "CovarianceSums",
    "activation_statistics",
    "activation_sums",
    "activation_table",
    "channel_dim_of",
    "covariance_eigenvalues",
    "covariance_eigenvalues_many",
    "covariance_metrics",
    "covariance_sums",
    "delve_saturation",
    "effective_dimension",
    "effective_rank",
    "output_tensors",
    "pack_rows",
    "parameter_norms",
    "parameter_table",
    "row_name",
    "sample_rows",
    "unpack_rows",
    "saturation_bounds",
    "saturation_thresholds",
]
