"""Circuit blocks that can be characterized, by name."""

from __future__ import annotations

import importlib

from charact.blocks.base import Block, JobContext, JobFailed
from charact.errors import UserError

# block name -> "module:Class"; imported only when used.
BLOCKS: dict[str, str] = {
    "sense_amp": "charact.blocks.sense_amp:SenseAmp",
}


def get_block(name: str) -> Block:
    """An instance of the named block."""
    if name not in BLOCKS:
        raise UserError(f"unknown block {name!r}; known: {', '.join(sorted(BLOCKS))}")
    module, _, cls = BLOCKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["BLOCKS", "Block", "JobContext", "JobFailed", "get_block"]
