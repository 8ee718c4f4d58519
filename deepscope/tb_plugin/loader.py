"""The `tensorboard_plugins` entry point: tiny and import-safe.

TensorBoard imports this module unguarded at start-up (an exception here stops
TensorBoard itself), so it imports only TensorBoard's base plugin module and
defers the rest to `load()`.
"""

from tensorboard.plugins import base_plugin

PLUGIN_NAME = "deepscope"

# Samples kept per series unless --samples_per_plugin says otherwise: enough to
# keep a 10,000-step run logged every 10 steps whole, with room to spare.
DEFAULT_SAMPLES = 2500


class DeepscopeLoader(base_plugin.TBLoader):
    """Declares deepscope's sampling default and builds the plugin."""

    def fix_flags(self, flags):
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            samples.setdefault(PLUGIN_NAME, DEFAULT_SAMPLES)

    def load(self, context):
        from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin

        return DeepscopePlugin(context)
