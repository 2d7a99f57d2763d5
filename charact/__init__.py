"""charact: characterize in-memory-computing attention hardware with SPICE and carry
the results to transformer accuracy and system latency/energy.

Stages, each a function with a plain input and output::

    spec -> deck -> run -> measure -> table -> fit -> model -> attention / roll-up
"""

from __future__ import annotations

__version__ = "0.1.0"
