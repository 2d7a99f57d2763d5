"""Gain-cell attention circuits: characterization blocks in SPICE.

The second architecture of charact, after N. Leroux, P.-P. Manea et al., "Analog
in-memory computing attention mechanism for fast and energy-efficient large language
models" (arXiv 2409.19315; Nat. Comput. Sci. 2025): K and V are stored as charge in gain
cells, a query element is the width of a read word-line pulse, the cells' charges add on
a bitline, and a charge-to-pulse readout turns the sum into the next stage's pulse width,
saturating like a hard sigmoid. The circuits are in ``netlists/gain_cell.sp``; the blocks:

* ``gc_multiply`` (:mod:`charact.gaincell.multiply`): charge against stored voltage and
  pulse width, the 2-D multiply surface;
* ``gc_retention`` (:mod:`charact.gaincell.retention`): stored voltage against time after
  a write, with the leakage split by path;
* ``gc_readout`` (:mod:`charact.gaincell.readout`): output pulse width against input
  charge, its gain, offset and saturation;
* ``gc_write`` (:mod:`charact.gaincell.write`): write time, energy and written-level error.

``charact fit`` turns the first three into ``grid_table`` models (values over PVT and the
block's own axes, :mod:`charact.lookup.grid_table`) and ``gc_write`` into a ``pvt_table``.
"""
