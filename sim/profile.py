"""Per-stream profile of a whole accelerator in Amaranth's simulator: who waits for whom.

``profile(model, folding, frames=2)`` plays ``frames`` images (smooth traffic: the input is valid
every cycle, the output always ready) through an :class:`~squeezehw.hw.accelerator.Accelerator`
and samples, every cycle, the handshake of each top-level stage's input and output stream (and,
with ``detail=True``, every stream inside the Fire modules).  Per stream it counts

- ``xfers``: beats transferred (valid & ready),
- ``blocked``: cycles the producer offered a beat that the consumer refused (valid & ~ready),
- ``starved``: cycles the consumer was ready but the producer had nothing (~valid & ready),
- ``first``/``last``: cycles of the first and last transfer,

and the steady-state ``cycles_per_frame`` (spacing of consecutive frames' last output beats).
A stage whose *input* is blocked a lot while its *output* is starved is the bottleneck (or is
bursty); a stage whose output is blocked waits for its consumer.

Command line (no ``squeezehw`` CLI needed)::

    python -m squeezehw.sim.profile default            # the built-in model, 2 frames
    python -m squeezehw.sim.profile default --frames 3 --detail

The simulator runs about 2-5 k cycles per second here, so two frames of the default model take a
few tens of seconds; use Verilator (``squeezehw sim``) for longer runs.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

__all__ = ["stream_ports", "profile", "format_table"]


def _port_pairs(acc, detail: bool) -> list[tuple[str, object]]:
    """(name, stream port) for every stage input/output of interest, in stream order."""
    out = []
    for p in acc.plan:
        name = p["name"]
        entry = p["window"].i if p.get("window") is not None else p["block"].i
        out.append((f"{name}.in", entry))
        if p.get("window") is not None:
            out.append((f"{name}.window.o", p["window"].o))
        if detail and p["kind"] == "fire":
            fire = p["block"]
            for bname, blk in getattr(fire, "chain_blocks", []):
                for pname in ("i", "a", "b", "o", "o0", "o1"):
                    port = getattr(blk, pname, None)
                    if port is not None and hasattr(port, "valid"):
                        out.append((f"{name}/{bname}.{pname}", port))
        if detail and p["kind"] == "head":
            out.append((f"{name}/mvu.o", p["block"].mvu.o))
        out.append((f"{name}.out", p["block"].o))
        if p.get("out_fifo") is not None:
            out.append((f"{name}.fifo.o", p["out_fifo"].o))
    return out


def stream_ports(acc, detail: bool = False) -> list[tuple[str, object]]:
    """The streams :func:`profile` samples (call after the design was elaborated when
    ``detail`` is set: the Fire modules create their inner blocks during elaboration)."""
    return _port_pairs(acc, detail)


def profile(model, folding=None, *, images: np.ndarray | None = None, frames: int = 2,
            detail: bool = False, max_cycles: int | None = None, seed: int = 0, target=None) -> dict:
    """Simulate ``frames`` images through the accelerator; returns {"rows": [...], ...}.

    The design is the build plan's (``squeezehw.plan.lowering.lower(model, folding, target)``), and the
    expected frame time the plan's cost model.  ``images`` defaults to random uint8 images of the
    model's shape.  The run stops when the
    last frame's class beat leaves, or after ``max_cycles`` (default: 4x the cost model's frame
    time times ``frames``, plus 20000).
    """
    from amaranth.sim import Simulator

    from ..plan.folding import default_folding
    from ..plan.lowering import lower
    from .simulate import image_beats

    folding = folding or default_folding(model)
    if images is None:
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, (frames, model.in_ch, model.height, model.width), dtype=np.uint8)
    images = np.asarray(images, dtype=np.uint8)
    frames = images.shape[0]
    plan = lower(model, folding, target)
    acc = plan.accelerator()
    expected = plan.cycles_per_frame()
    max_cycles = max_cycles or 4 * expected * frames + 20000
    beats = image_beats(images, acc.in_lanes)
    out_per_frame = model.classes + 1
    n_out = frames * out_per_frame

    sim = Simulator(acc)          # elaborates the design: Fire modules now know their blocks
    sim.add_clock(1e-8)
    ports = _port_pairs(acc, detail)
    sigs = []
    for _, port in ports:
        sigs += [port.valid, port.ready]
    stats = [[0, 0, 0, None, None] for _ in ports]    # xfers, blocked, starved, first, last
    res = {"in": 0, "out": 0, "out_stamps": [], "cycles": 0}

    async def tb(ctx):
        ctx.set(acc.o.ready, 1)
        i = 0
        ctx.set(acc.i.valid, 1)
        ctx.set(acc.i.payload, beats[0])
        for cyc in range(max_cycles):
            vals = await ctx.tick().sample(acc.i.ready, acc.o.valid, *sigs)
            in_ready, o_valid, pv = vals[2], vals[3], vals[4:]
            for k, st in enumerate(stats):
                v, r = pv[2 * k], pv[2 * k + 1]
                if v and r:
                    st[0] += 1
                    st[4] = cyc
                    if st[3] is None:
                        st[3] = cyc
                elif v:
                    st[1] += 1
                elif r:
                    st[2] += 1
            if i < len(beats) and in_ready:
                i += 1
                if i < len(beats):
                    ctx.set(acc.i.payload, beats[i])
                else:
                    ctx.set(acc.i.valid, 0)
            if o_valid:
                res["out"] += 1
                if res["out"] % out_per_frame == 0:
                    res["out_stamps"].append(cyc)
                if res["out"] == n_out:
                    res["cycles"] = cyc + 1
                    return
        res["cycles"] = max_cycles

    t0 = time.time()
    sim.add_testbench(tb)
    sim.run()
    stamps = res["out_stamps"]
    rows = [{"stream": name, "xfers": s[0], "blocked": s[1], "starved": s[2], "first": s[3], "last": s[4]}
            for (name, _), s in zip(ports, stats)]
    return {
        "model": model.name, "frames": frames, "cycles": res["cycles"], "finished": res["out"] == n_out,
        "frame_done": stamps,
        "cycles_per_frame": (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else None,
        "expected_cycles_per_frame": expected, "sim_seconds": time.time() - t0, "rows": rows,
    }


def format_table(rep: dict) -> str:
    lines = [f"{rep['model']}: {rep['frames']} frames, {rep['cycles']} cycles"
             f"{'' if rep['finished'] else ' (NOT finished)'}, frames done at {rep['frame_done']}, "
             f"cycles/frame {rep['cycles_per_frame']} (cost model {rep['expected_cycles_per_frame']}), "
             f"{rep['sim_seconds']:.0f} s",
             f"{'stream':<40}{'xfers':>8}{'blocked':>9}{'starved':>9}{'first':>8}{'last':>8}"]
    for r in rep["rows"]:
        lines.append(f"{r['stream']:<40}{r['xfers']:>8}{r['blocked']:>9}{r['starved']:>9}"
                     f"{'-' if r['first'] is None else r['first']:>8}{'-' if r['last'] is None else r['last']:>8}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m squeezehw.sim.profile", description=__doc__.split("\n")[0])
    ap.add_argument("model", help="`default`, or an integer-model file")
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--detail", action="store_true", help="also every stream inside the Fire modules")
    ap.add_argument("--folding", help="folding JSON (default: the model's default folding)")
    args = ap.parse_args(argv)
    from ..pipeline import resolve_model
    from ..plan.folding import Folding
    model = resolve_model(args.model)
    folding = Folding.load(args.folding) if args.folding else None
    images = None
    if args.model == "default":
        from ..quant.default_model import default_eval_images
        images = default_eval_images(args.frames)[0]
    rep = profile(model, folding, images=images, frames=args.frames, detail=args.detail)
    print(format_table(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
