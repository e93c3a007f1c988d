"""What finer folding could buy (a cost-model experiment, not a hardware feature).

The hardware requires SIMD to divide a conv's vector (K*K*C) and PE its output channels.  This
script re-runs the automatic folder on a model with a hypothetical relaxation: SIMD and PE may be
any number up to 64 (the last step / fold padded with zeros), and prints the best folding within the
budget next to the real folder's, for several speed slacks.  It answers "is the gap to 0.90 MAC
efficiency at a small budget the divisor rule, or one array per layer?".

    python benchmarks/folding_limits.py --model build/bench-sq11-w8.npz --budget 150
"""
import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from squeezehw.plan import folding  # noqa: E402
from squeezehw.plan.folding import Stage, auto_fold, divisors, window_lanes  # noqa: E402
from squeezehw.quant.intmodel import IntModel  # noqa: E402


def padded_choices(n: int) -> list[int]:
    return sorted(set(range(1, min(n, 64) + 1)) | set(divisors(n)))


class PaddedStage(Stage):
    """Stage whose SIMD/PE need not divide: ceil() steps and folds."""

    def simd_choices(self):
        return divisors(self.in_ch) if self.kind == "pool" else padded_choices(self.vector)

    def pe_choices(self):
        return [1] if self.kind == "pool" else padded_choices(self.out_ch)

    def cycles(self, simd, pe=1):
        if self.kind == "pool":
            return super().cycles(simd, pe)
        mvu = self.out_pixels * -(-self.vector // simd) * -(-self.out_ch // pe)
        if not self.windowed:
            return mvu
        lanes = window_lanes(self.in_ch, simd) if self.vector % simd == 0 else self.in_ch
        return max(mvu, self.in_hw[0] * self.in_hw[1] * (self.in_ch // lanes),
                   self.out_pixels * self.kernel ** 2 * (self.in_ch // lanes))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="integer-model file")
    ap.add_argument("--budget", type=int, default=150, help="multiplier budget")
    args = ap.parse_args(argv)
    model = IntModel.load(args.model)
    real_stages = folding.stages

    def padded_stages(m):
        return [PaddedStage(**s.__dict__) for s in real_stages(m)]

    print(f"{'folding':>28s} {'slack':>6s} {'mults':>6s} {'cycles':>10s} {'efficiency':>10s}")
    for label, st in (("divisors (the hardware)", real_stages), ("padded up to 64 (hypothetical)", padded_stages)):
        folding.stages = st
        try:
            for slack in (0.0, 0.02, 0.05, 0.15):
                s = auto_fold(model, max_multipliers=args.budget, speed_slack=slack).summary(model)
                print(f"{label:>28s} {100 * slack:5.0f}% {s['multipliers']:6d} "
                      f"{s['expected_cycles_per_frame']:10d} {s['expected_mac_efficiency']:10.3f}")
        finally:
            folding.stages = real_stages
    return 0


if __name__ == "__main__":
    sys.exit(main())
