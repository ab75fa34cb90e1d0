#!/usr/bin/env python3
"""Runs the dit and PyTorch DiT benchmarks side by side and prints a table.

    python3 bench/compare.py            # all cases, 3 alternating rounds
    python3 bench/compare.py --rounds 5 --iters 5 --cases S2-fwd,S2-train
    python3 bench/compare.py --against-dit /tmp/old/bench_dit   # before/after a change

Every case runs in a fresh process per side (so peak RSS is that case's),
pinned to the same CPUs with the same thread count; the two sides alternate
round by round so that load from other processes hits both alike. Reported:
the median over all timed steps of all rounds (wall), CPU time per step
(user + system, less sensitive to other load), and the largest peak RSS.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = {
    "S2-fwd": ("DiT-S/2", 8, "forward"),
    "S2-train": ("DiT-S/2", 8, "train"),
    "B4-fwd": ("DiT-B/4", 8, "forward"),
    "B4-train": ("DiT-B/4", 8, "train"),
    "XL2-fwd": ("DiT-XL/2", 2, "forward"),
}


def load():
    return open("/proc/loadavg").read().split()[0]


def run(cmd, env):
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--precision", default="f32",
                    help="f32, bf16 (dit --precision bf16 against PyTorch under bf16 autocast), "
                         "or both (one table each)")
    ap.add_argument("--priority", action="store_true",
                    help="run both sides at nice -19 (needs root): on a machine shared with "
                         "other jobs, this approximates an idle machine for both alike")
    ap.add_argument("--omp-passive", action="store_true",
                    help="OMP_WAIT_POLICY=PASSIVE for PyTorch: on a machine loaded by other "
                         "processes its spinning OpenMP threads lose their cores (DiT-B/4 bf16 "
                         "forward at load 8.6: 3230 ms spinning, 384 ms passive)")
    ap.add_argument("--against-dit", metavar="BENCH_DIT",
                    help="compare with another build's bench_dit binary (e.g. an older commit's) "
                         "instead of PyTorch: a before/after check of a change")
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--example", "bench_dit"], cwd=ROOT, check=True)
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads),
               MKL_NUM_THREADS=str(a.threads))
    if a.omp_passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    cpus = ",".join(str(i) for i in range(a.threads))
    pin = ["taskset", "-c", cpus] if shutil.which("taskset") else []
    if a.priority:
        pin = ["nice", "-n", "-19"] + pin
    common = ["--warmup", str(a.warmup), "--iters", str(a.iters)]
    def dit_side(binary):
        # f32 without the flag, so that a build from before --precision also runs.
        return lambda m, b, mode, prec: pin + [
            binary, "--model", m, "--batch", str(b), "--mode", mode] + (
            ["--precision", prec] if prec != "f32" else []) + common

    other = "baseline dit" if a.against_dit else "PyTorch"
    sides = {
        "dit": dit_side(os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                     "release/examples/bench_dit")),
        other: dit_side(os.path.abspath(a.against_dit)) if a.against_dit else
        lambda m, b, mode, prec: pin + [
            sys.executable, os.path.join(ROOT, "bench/bench_torch.py"),
            "--model", m, "--batch", str(b), "--mode", mode, "--threads", str(a.threads),
            "--precision", prec] + common,
    }
    precisions = ["f32", "bf16"] if a.precision == "both" else [a.precision]
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {a.threads} threads, "
          f"{a.rounds} rounds x {a.iters} steps, load at start {load()}"
          f"{', nice -19' if a.priority else ''}"
          f"{', PyTorch OMP_WAIT_POLICY=PASSIVE' if a.omp_passive else ''}", flush=True)
    rows = []
    for case in a.cases.split(","):
        model, batch, mode = CASES[case]
        for prec in precisions:
            res = {s: {"times": [], "cpu": [], "rss": 0.0} for s in sides}
            loads = []
            kernel = ""
            for r in range(a.rounds):
                for side, cmd in sides.items():
                    loads.append(float(load()))
                    out = run(cmd(model, batch, mode, prec), env)
                    res[side]["times"] += out["times_ms"]
                    res[side]["cpu"].append(out["cpu_ms"])
                    res[side]["rss"] = max(res[side]["rss"], out["peak_rss_mib"])
                    if side == "dit" and prec == "bf16":
                        kernel = f" ({out.get('bf16_kernel', '?')})"
                    print(f"  {case} {prec} round {r + 1} {side}: {out['median_ms']} ms wall, "
                          f"{out['cpu_ms']} ms cpu, {out['peak_rss_mib']} MiB", flush=True)
            d, p = res["dit"], res[other]
            dm, pm = statistics.median(d["times"]), statistics.median(p["times"])
            dc, pc = statistics.median(d["cpu"]), statistics.median(p["cpu"])
            rows.append((f"{model} b{batch} {mode} {prec}{kernel}", dm, pm, dc, pc, d["rss"],
                         p["rss"], statistics.mean(loads)))
    print()
    print(f"| case | dit ms | {other} ms | ratio | dit CPU ms | {other} CPU ms | CPU ratio "
          f"| dit peak RSS MiB | {other} peak RSS MiB | RSS ratio | mean load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, dm, pm, dc, pc, dr, pr, ld in rows:
        print(f"| {name} | {dm:.0f} | {pm:.0f} | {dm / pm:.2f} | {dc:.0f} | {pc:.0f} | {dc / pc:.2f} "
              f"| {dr:.0f} | {pr:.0f} | {dr / pr:.2f} | {ld:.1f} |")


if __name__ == "__main__":
    main()
