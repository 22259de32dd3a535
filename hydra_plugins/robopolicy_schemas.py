"""Registers robopolicy's config schemas for every Hydra composition.

Hydra imports each module of the ``hydra_plugins`` namespace package before it composes a
config, so importing ``robopolicy.config`` here puts the schemas that conf/*.yaml select
(``- /schema/algo/dppo@_here_``) in the ConfigStore even for code that composes conf/ without
importing robopolicy first (tests, notebooks, tools). The entry points import it themselves.
"""

import robopolicy.config  # noqa: F401  (registers the schemas on import)
