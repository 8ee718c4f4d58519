"""Callbacks that attach `deepscope.watch()` to training frameworks.

- `deepscope.integrations.lightning.DeepscopeCallback`: PyTorch Lightning
  (`lightning.pytorch` or `pytorch_lightning`); `pip install deepscope[lightning]`.
- `deepscope.integrations.transformers.DeepscopeCallback`: the Hugging Face
  `transformers.Trainer`; `pip install deepscope[transformers]`.

This package imports nothing optional: each framework is imported by its own
module, so `import deepscope` and `import deepscope.integrations` work
without either installed.
"""
