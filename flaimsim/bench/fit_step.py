"""Time one model-fitting step on fit problems taken from a real run, and fingerprint the fit.

    python -m flaimsim.bench.fit_step --capture F      # central AIM, Adult, T = 192, seed 0
                                                        # (--dataset, --rounds, --keep):
                                                        # keep fits 40 and 150 in the file F
    python -m flaimsim.bench.fit_step --problems F     # 200 steps of each, best of --repeats

The timing half imports nothing newer than ``MirrorDescent``, so the same file times another
checkout (``PYTHONPATH=OLD python NEW/flaimsim/bench/fit_step.py --problems F``): run both
alternately, since this machine's speed drifts by ±15 % within minutes. The SHA-256 of the
fitted potentials and node marginals must then agree: a faster step may not move the fit.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import time


def capture(path: str, keep: tuple[int, ...] = (40, 150), dataset: str = "adult",
            rounds: int = 192) -> None:
    """Run central AIM (the reproduce setting: ``dataset``, T = ``rounds``, seed 0) and pickle
    the inputs of fits ``keep``."""
    from flaimsim.bench.reproduce import base_config
    from flaimsim.mechanisms import mirror_descent as md
    from flaimsim.protocols.central import run_central

    class Captured(BaseException):
        """Both fits kept: the run has nothing more to give."""

    plain, calls, kept = md.MirrorDescent.run, [0], {}

    def run(self, settings, warm_start=None, known_total=None):
        calls[0] += 1
        if calls[0] in keep:
            kept[calls[0]] = ([(o.clique, o.values, o.weight ** -0.5)
                               for o in self.observations], self.domain, settings,
                              warm_start, known_total)
            if len(kept) == len(keep):
                raise Captured
        return plain(self, settings, warm_start, known_total)

    md.MirrorDescent.run = run
    try:
        run_central(base_config(dataset, protocol="central", rounds=rounds, seed=0))
    except Captured:
        pass
    finally:
        md.MirrorDescent.run = plain
    with open(path, "wb") as f:
        pickle.dump(kept, f)


def time_steps(path: str, repeats: int = 3) -> None:
    from flaimsim.mechanisms.mirror_descent import MirrorDescent

    with open(path, "rb") as f:
        kept = pickle.load(f)
    for index, (measured, domain, settings, warm, total) in sorted(kept.items()):
        fit = MirrorDescent(domain, measured)
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            result = fit.run(settings, warm, total)
            best = min(best, time.process_time() - start)
        digest = hashlib.sha256()
        for a in [*result.potentials, *result.node_marginals]:
            digest.update(a.tobytes())
        cells = sum(a.size for a in result.node_marginals)
        print(f"fit {index}: {len(fit.tree.nodes)} nodes, {cells} cells, "
              f"{result.iterations} steps, {best / result.iterations * 1e3:.3f} ms/step "
              f"(CPU, best of {repeats}), loss {result.loss!r}, sha256 {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--capture", metavar="FILE")
    group.add_argument("--problems", metavar="FILE")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dataset", default="adult", help="with --capture (default adult)")
    parser.add_argument("--rounds", type=int, default=192, help="with --capture (default 192)")
    parser.add_argument("--keep", default="40,150",
                        help="with --capture: which fits to keep, 1-based (default 40,150)")
    args = parser.parse_args()
    if args.capture:
        capture(args.capture, tuple(int(k) for k in args.keep.split(",")), args.dataset,
                args.rounds)
    else:
        time_steps(args.problems, args.repeats)
