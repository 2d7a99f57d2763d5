"""Lookup models: fitted code-error tables and PVT delay/energy tables in versioned files.

The attention pipeline and the roll-up use only this package's API and file format
(``models/README.md``); they never touch SPICE.
"""

from __future__ import annotations

from charact.lookup.error_model import (
    PVT,
    QUANTILES,
    CodeErrorTable,
    ErrorModel,
    error_model_from_samples,
)
from charact.lookup.fileformat import SCHEMA
from charact.lookup.structured import ChipColumnErrors, PointErrorModel, StaticPart

__all__ = [
    "PVT",
    "QUANTILES",
    "SCHEMA",
    "ChipColumnErrors",
    "CodeErrorTable",
    "ErrorModel",
    "PointErrorModel",
    "StaticPart",
    "error_model_from_samples",
]
