"""Reset tree: each block runs in a clock domain of its own whose reset is a register, not the
design's reset net.

Why: on the ULX3S-85F one reset register drove every control flip-flop of the accelerator, a net
spread over the whole chip; nextpnr gave it 9.4 ns of routing to the farthest skid buffer, the
critical path at 100 MHz.  With a tree, the design's reset drives one register per top-level stage,
those drive one register per block, and each block's reset net stays inside the block (the placer
puts each tree register among its loads).  Every path of the tree ends at a flip-flop, so each
level has a whole clock period.

Every leaf is ``DEPTH`` registers from the design's reset, so all blocks leave reset in the same
cycle, ``DEPTH`` cycles after the design's reset falls.  Until then the container keeps its
ports quiet (:func:`reset_gate`): no beat goes in or out while its blocks are still to be reset.

The tree's registers are all copies of one signal, so Yosys's ``opt_merge`` would merge them back
into one register; they carry the attribute ``squeezehw_reset_tree``, and :data:`YOSYS_KEEP` (run
after reading the design, before synthesis; ``squeezehw.toolchain.synth`` does) marks their flip-flops
``keep``, which ``opt_merge`` respects.
"""
from amaranth import ClockDomain, ClockSignal, DomainRenamer, ResetSignal, Signal

__all__ = ["DEPTH", "ATTRIBUTE", "YOSYS_KEEP", "registered_reset", "in_local_reset", "reset_gate"]

DEPTH = 2
ATTRIBUTE = "squeezehw_reset_tree"
# a Yosys command: the flip-flops whose output wire has the attribute get ``keep``
YOSYS_KEEP = f"setattr -set keep 1 a:{ATTRIBUTE} %ci1:+$dff[Q] t:$dff %i"


def registered_reset(m, name: str, levels: int) -> Signal:
    """``levels`` registers in a row from the ``sync`` domain's reset; the last one's output.  Their
    reset value is 1: a reset that only reaches them through ``ResetInserter`` still propagates."""
    rst = ResetSignal("sync")
    for k in range(levels):
        r = Signal(init=1, name=f"{name}_rst{k}", attrs={ATTRIBUTE: 1})
        m.d.sync += r.eq(rst)
        rst = r
    return rst


def in_local_reset(m, name: str, block, levels: int):
    """``block`` moved into a domain ``rt_<name>`` (same clock as ``sync``) whose reset is
    :func:`registered_reset` with ``levels`` registers; returns the block to add as a submodule."""
    if levels <= 0:
        return block
    domain = f"rt_{name}"
    m.domains += ClockDomain(domain, local=True)
    m.d.comb += [ClockSignal(domain).eq(ClockSignal("sync")),
                 ResetSignal(domain).eq(registered_reset(m, name, levels))]
    return DomainRenamer({"sync": domain})(block)


def reset_gate(m, name: str, levels: int) -> Signal:
    """1 in the ``levels`` cycles after the ``sync`` reset falls, while blocks ``levels`` registers
    down the tree are still to be reset: a container ANDs its ports' valid and ready with its
    inverse.  (In the reset cycle itself the ports behave as without a tree.)"""
    gate = Signal(name=f"{name}_reset_pending")
    pending = []
    rst = ResetSignal("sync")
    for k in range(levels):
        r = Signal(init=1, name=f"{name}_gate{k}", attrs={ATTRIBUTE: 1})
        m.d.sync += r.eq(rst)
        pending.append(r)
        rst = r
    m.d.comb += gate.eq(0 if not pending else _any(pending))
    return gate


def _any(signals):
    out = signals[0]
    for s in signals[1:]:
        out = out | s
    return out
