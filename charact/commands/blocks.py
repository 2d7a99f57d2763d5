"""``charact blocks``: the registered blocks and the reference of their ``[measure]`` options."""

from __future__ import annotations

import argparse
import sys

from charact.blocks import BLOCKS, Block, get_block


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "blocks", help="list the blocks, or print one block's [measure] options",
        description="Without NAME: the registered blocks, one line each. With NAME: the "
        "block's [measure] options as a Markdown table (name, default, constraint, "
        "meaning), generated from the options dataclass the block checks specs against.")
    p.add_argument("name", nargs="?", metavar="NAME", help="a block name (see the list)")
    p.set_defaults(func=cmd_blocks)


def summary(block: Block) -> str:
    """The first sentence of the block class's docstring (else its module's)."""
    doc = type(block).__doc__ or sys.modules[type(block).__module__].__doc__ or ""
    para = " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "")
    head, dot, _ = para.partition(". ")
    return head + "." if dot else para


def options_table(block: Block) -> str:
    """The block's ``[measure]`` options as a Markdown table."""
    from charact.blocks.options import option_fields, toml_value

    rows = ["| option | default | constraint | meaning |", "| --- | --- | --- | --- |"]
    for o in option_fields(block.Options):
        cells = [f"`{o.name}`", f"`{toml_value(o.default, limit=200)}`", o.text,
                 o.constraint.doc]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def cmd_blocks(args: argparse.Namespace) -> int:
    if args.name is None:
        width = max(len(n) for n in BLOCKS)
        for name in BLOCKS:
            print(f"{name:<{width}}  {summary(get_block(name))}")
        return 0
    block = get_block(args.name)  # an unknown name is a one-line user error
    print(f"[measure] options of block {block.name}: {summary(block)}")
    print()
    print(options_table(block), end="")
    return 0
