"""The stage packages that attach things to models, imported once so that their kinds are known.

A model file names what is attached to its model by kind (``"mask"``, ``"kmeans"``,
``"activation-quantizer"``, ...). The classes register themselves with the registries of
:mod:`deepshrink.models.attach` when their package is imported; those registries name no
stage. This module is the one list of the packages that register kinds, and the top-level
package imports it, so whatever reads a model file (``load_model``, the codec, the CLI) finds
every kind. A new stage that attaches things to models: import it here.
"""

import deepshrink.prune  # noqa: F401  (registers the "mask" parametrization)
import deepshrink.quant  # noqa: F401  (registers "linear-quant", "kmeans" and "activation-quantizer")
