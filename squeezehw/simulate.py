"""Whole-design simulation in Verilator, checked bit for bit against the golden model.

``simulate_frames`` builds (cached) the accelerator inside the simulation harness, plays images
through it back to back, decodes the output stream (per frame: every logit, then the class) and
compares it with ``golden.run``: every logit must be equal and the class equal.  It reports cycles
per frame in steady state (spacing of consecutive frames' last output beats), latency (first input
beat of frame 0 to its last output beat), MAC efficiency = MACs per frame / (multipliers x cycles
per frame) and simulation speed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import golden
from .folding import Folding, stages
from .hw.streamsim import pack_lanes
from .intmodel import IntModel
from .verilator import SimTraffic

__all__ = ["image_beats", "simulate_frames", "SimReport"]


def image_beats(images: np.ndarray, lanes: int) -> list[int]:
    """Raster order, each pixel's channels in beats of ``lanes`` bytes, lane 0 in the LSBs."""
    n, c, h, w = images.shape
    px = images.transpose(0, 2, 3, 1).reshape(-1, c // lanes, lanes)   # (N*H*W, beats, lanes)
    weights = (1 << (8 * np.arange(lanes, dtype=object)))
    return [int(v) for v in (px.astype(object) * weights).sum(axis=2).reshape(-1)]


@dataclass
class SimReport:
    frames: int
    bit_exact: bool
    cycles_per_frame: float | None
    latency_cycles: int | None
    multipliers: int
    macs_per_frame: int
    mac_efficiency: float | None
    expected_cycles_per_frame: int
    total_cycles: int
    sim_cycles_per_second: float
    build_seconds: float
    build_cached: bool
    sim_seconds: float
    traffic: dict
    mismatches: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    golden_classes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _harness_capacity(frames: int) -> int:
    """Round the harness size up so that runs with similar frame counts share one cached build."""
    cap = 8
    while cap < frames:
        cap *= 2
    return cap


def build_for(model: IntModel, folding: Folding, frames: int, *, waves: bool = False, progress: bool = True):
    from . import verilator
    from .build import module_name
    from .hw.accelerator import Accelerator
    from .hw.harness import SimHarness
    accel = Accelerator(model=model, folding=folding)
    cap = _harness_capacity(frames)
    in_bpf = model.height * model.width * model.in_ch // accel.in_lanes
    out_bpf = model.classes + 1
    harness = SimHarness(accel, in_depth=cap * in_bpf, out_depth=cap * out_bpf, frames_max=cap,
                         in_beats_per_frame=in_bpf, out_beats_per_frame=out_bpf,
                         watchdog=max(1 << 16, 4 * folding.summary(model)["expected_cycles_per_frame"]))
    b = verilator.build(harness, name=f"tb_{module_name(model)}", waves=waves, progress=progress,
                        extra_meta={"in_lanes": accel.in_lanes})
    return b


def decode(outputs: list[int], classes: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    per = classes + 1
    arr = np.array(outputs[:frames * per], dtype=object).reshape(frames, per)
    return arr[:, :classes].astype(np.int64), arr[:, classes].astype(np.int64)


def simulate_frames(model: IntModel, folding: Folding, images: np.ndarray, *,
                    traffic: SimTraffic = SimTraffic(), reset_after: int | None = None,
                    waves: bool = False, progress: bool = True) -> SimReport:
    from . import verilator
    images = np.asarray(images, dtype=np.uint8)
    n = images.shape[0]
    b = build_for(model, folding, n, waves=waves, progress=progress)
    beats = image_beats(images, b.meta["in_lanes"])
    res = verilator.run(b, beats, n_out=n * (model.classes + 1), traffic=traffic,
                        reset_after=reset_after, waves=waves)
    want = golden.run(model, images)
    got_logits, got_cls = decode(res["outputs"], model.classes, n) if not res["stuck"] else (None, None)
    mismatches = []
    if res["stuck"]:
        mismatches.append(f"design hung: {len(res['outputs'])} of {n * (model.classes + 1)} output beats "
                          f"after {res['cycles']} cycles ({res['in_count']} of {len(beats)} input beats taken)")
    else:
        for f in range(n):
            diff = np.nonzero(got_logits[f] != want.logits[f])[0]
            if diff.size:
                k = int(diff[0])
                mismatches.append(f"frame {f}: logit of class {k} is {int(got_logits[f, k])}, golden "
                                  f"{int(want.logits[f, k])} ({diff.size} logits differ)")
            if got_cls[f] != want.classes[f]:
                mismatches.append(f"frame {f}: class {int(got_cls[f])}, golden {int(want.classes[f])}")
    st = stages(model)
    fsum = folding.summary(model)
    macs = sum(s.macs for s in st)
    mults = fsum["multipliers"]
    outs = res["out_stamps"][:n]
    cpf = (outs[-1] - outs[0]) / (n - 1) if n > 1 and not res["stuck"] else None
    lat = outs[0] - res["in_stamps"][0] if outs and not res["stuck"] else None
    return SimReport(
        frames=n, bit_exact=not mismatches, cycles_per_frame=cpf, latency_cycles=lat,
        multipliers=mults, macs_per_frame=macs,
        mac_efficiency=(macs / (mults * cpf)) if cpf else None,
        expected_cycles_per_frame=fsum["expected_cycles_per_frame"], total_cycles=res["cycles"],
        sim_cycles_per_second=res["cycles"] / max(res["run_seconds"], 1e-9),
        build_seconds=b.seconds, build_cached=b.cached, sim_seconds=res["wall_seconds"],
        traffic=asdict(traffic), mismatches=mismatches,
        classes=[] if got_cls is None else [int(c) for c in got_cls],
        golden_classes=[int(c) for c in want.classes])

