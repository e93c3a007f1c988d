"""Tool drivers: Verilog out, and the open tools that consume it.

``build`` (a plan -> Verilog, weight memory images, design.json), ``verilator`` (cached Verilator
builds driven by cocotb) and ``synth`` (Yosys + nextpnr + packers: out-of-context cores and board
bitstreams, with typed JSON reports).
"""
