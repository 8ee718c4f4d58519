"""The `tensorboard_plugins` entry point: tiny and import-safe.

TensorBoard imports this module unguarded at start-up (an exception here stops
TensorBoard itself), so it imports only TensorBoard's base plugin module and
defers the rest to `load()`.
"""

from tensorboard.plugins import base_plugin

PLUGIN_NAME = "deepscope"

# Samples kept per series unless --samples_per_plugin says otherwise: a
# 10,000-step run logged every 10 steps stays whole (as TensorBoard keeps 1,000
# scalars). More samples cost every read: both loaders convert each kept step.
DEFAULT_SAMPLES = 1000


class DeepscopeLoader(base_plugin.TBLoader):
    """Declares deepscope's sampling default and builds the plugin."""

    def fix_flags(self, flags):
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            samples.setdefault(PLUGIN_NAME, DEFAULT_SAMPLES)

    def load(self, context):
        from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin

        return DeepscopePlugin(context)
