"""The replica-ramp in-memory-ADC column family (Topkima-Former, S. Dong et al., arXiv
2411.13050, Sec. III-A): design, netlist and bench, calibration, error tables and the
composed (cell-level) column, in one package.

Modules, each importing only those above it (``tests/test_column_package.py`` keeps it
so)::

    netlist        the array deck: cells, replica rows, precharge, SAs, sources
    design         the [measure] design options, the mapped MAC range, the patterns
    bench          one array conversion in SPICE, its decoding, early stop, table rows
    calibration    the replica pulses (t_cal, t_step) of an operating point
    cells          small SPICE benches: read stacks, pulse edges, bitline C, SA offset
    composed       the vectorized column integrated from the cell models
    characterize   all cell benches of one operating point -> a PointModel
    blocks         ima_column, ima_calibration, ima_cell
    composed_blocks  ima_cell_mc, ima_column_composed
    errortable     code against ideal MAC per PVT point, from a column sweep
    validate       the composed column against full SPICE, as a report
    cases          column sweeps side by side (nominal, untrimmed, trimmed), paired

Why a composed column: a full column costs ngspice a minute per conversion at the
paper's size, so a corner x Monte-Carlo error table by brute force takes hours; the
composed column integrates both bitlines from per-device SPICE models and is checked
against full SPICE on the same dies.
"""

#: The modules of the family in import order: a module may import only earlier ones.
LAYERS = ("netlist", "design", "bench", "calibration", "cells", "composed", "characterize",
          "blocks", "composed_blocks", "errortable", "validate", "cases")
