"""Plan and cost model: an integer model + a folding + a target -> the build plan everything reads.

``config`` (the serialisable build config), ``folding`` (parallelism per layer, auto-fold),
``lowering`` (``lower()``: the typed, frozen stage records the hardware is built from, each with its
expected cycles and resources), ``fifo_sizing`` (every FIFO depth, decided once), ``resources``
(multipliers, DSPs, block RAM and logic of a plan) and ``memory`` (does a model's weight storage fit a
board).  The target boards themselves are described in ``squeezehw.boards.registry``.
"""
