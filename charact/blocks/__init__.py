"""Circuit blocks that can be characterized, by name."""

from __future__ import annotations

import importlib

from charact.blocks.base import Block, JobContext, JobFailed
from charact.errors import UserError

# block name -> "module:Class"; imported only when used.
BLOCKS: dict[str, str] = {
    "sense_amp": "charact.blocks.sense_amp:SenseAmp",
    "topk_digital": "charact.blocks.digital:TopkDigital",
    "ima_column": "charact.column.blocks:ImaColumn",
    "ima_calibration": "charact.column.blocks:ImaCalibration",
    "ima_cell": "charact.column.blocks:ImaCell",
    "ima_cell_mc": "charact.column.composed_blocks:ImaCellMC",
    "ima_column_composed": "charact.column.composed_blocks:ImaColumnComposed",
    "gc_multiply": "charact.gaincell.multiply:GcMultiply",
    "gc_retention": "charact.gaincell.retention:GcRetention",
    "gc_readout": "charact.gaincell.readout:GcReadout",
    "gc_write": "charact.gaincell.write:GcWrite",
}


def get_block(name: str) -> Block:
    """An instance of the named block."""
    if name not in BLOCKS:
        raise UserError(f"unknown block {name!r}; known: {', '.join(sorted(BLOCKS))}")
    module, _, cls = BLOCKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["BLOCKS", "Block", "JobContext", "JobFailed", "get_block"]
