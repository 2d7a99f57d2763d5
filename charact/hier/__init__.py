"""Hierarchical characterization of the replica-ramp IMA column.

A full column costs ngspice a minute per conversion at the paper's size, so a corner x
Monte-Carlo error table by brute force takes hours to days. Here the column's error is
composed from small SPICE characterizations instead:

* :mod:`charact.hier.cells`: Monte-Carlo SPICE of one read stack (MAC cell, replica
  row, the merged calibration rows) and of the sense amplifier at one operating point:
  on-current and leakage against bitline voltage, the charge of a pulse's edges, the
  per-device spread of the current (and its threshold-voltage equivalent), the bitline
  parasitics, the SA offset distribution and decision delay.
* :mod:`charact.hier.composed`: a vectorized numerical column that integrates both
  bitlines from those models, draws per-cell mismatch per die, applies the calibration,
  steps the replica ramp and decides every cycle with the SA's offset; and the
  ``ima_column_composed`` block whose table has exactly the ``ima_column`` format.
* :mod:`charact.hier.validate`: agreement with a full-SPICE sweep, per corner and ideal
  code, written as a Markdown report.
"""
