"""The math, as pure functions: tensors in, results out; no I/O, no TensorBoard."""
