"""Simulation and verification (installed as ``squeezehw.sim``; the folder is sim/ in the repository).

Stream traffic for Amaranth's simulator (``streamsim``), the Verilator harness that wraps a design so
it runs at native speed (``harness``) and its cocotb testbenches (``tb_harness``, ``tb_board``), the
whole-network bit-exactness run against the golden model (``simulate``), the per-stream profiler
(``profile``), formal stream-protocol proofs (``formal``), and Verilog simulation models of vendor
cells (``models/``).
"""
