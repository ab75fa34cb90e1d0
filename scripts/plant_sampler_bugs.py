#!/usr/bin/env python3
"""Plants one bug at a time in the SiT samplers and checks that the transport
tests catch each: the oracle and solver tests must fail on every mutant and
pass on the untouched code.

    python3 scripts/plant_sampler_bugs.py            # all mutants
    python3 scripts/plant_sampler_bugs.py sde-euler-drift-sign

Each mutant is built in a copy of the working tree, in a target folder of its
own (MUTANTS_TARGET_DIR, default .cache/target-mutants: the first run builds
the dependencies there, later mutants rebuild only the crate; never the
checkout's target/, whose `dit` binary the mutants would replace) and runs
`cargo test --test diffusion transport::`. Prints, per mutant, whether the
tests failed and which; exits non-zero if any mutant survives or the
control fails. Not part of scripts/test.sh (one build per mutant).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ODE = "src/transport/sampler/ode.rs"
SDE = "src/transport/sampler/sde.rs"

# (name, file, exact text, replacement): each text must occur exactly once.
MUTANTS = [
    ("ode-euler-drift-sign", ODE,
     "OdeMethod::Euler => (&x + (k1 * h)?)?,",
     "OdeMethod::Euler => (&x - (k1 * h)?)?,"),
    ("ode-heun-no-corrector", ODE,
     "(&x + ((k1 + k2)? * (0.5 * h))?)?",
     "(&x + ((&k1 + (k2 * 0.0)?)? * h)?)?"),
    ("ode-dopri5-wrong-weight", ODE,
     "    500.0 / 1113.0,\n    125.0 / 192.0,\n    -2187.0 / 6784.0,\n    11.0 / 84.0,\n];",
     "    500.0 / 1112.0,\n    125.0 / 192.0,\n    -2187.0 / 6784.0,\n    11.0 / 84.0,\n];"),
    ("sde-euler-drift-sign", SDE,
     "((&x + (drift * dt)?)? + (z * spread)?)?",
     "((&x - (drift * dt)?)? + (z * spread)?)?"),
    ("sde-missing-sqrt-dt", SDE,
     "let spread = (2.0 * w * dt).sqrt();",
     "let spread = (2.0 * w).sqrt();"),
    ("sde-heun-drift-sign", SDE,
     "(&x_hat + ((k1 + k2)? * (0.5 * dt))?)?",
     "(&x_hat - ((k1 + k2)? * (0.5 * dt))?)?"),
    ("sde-last-step-mean-skipped", SDE,
     "(1.0 + h * dx, h * dout)",
     "(1.0 + 0.0 * dx, 0.0 * dout)"),
    ("sde-last-step-euler-wrong-sign", SDE,
     "(1.0 + h * vx, h * vo)",
     "(1.0 - h * vx, -h * vo)"),
]


def copy_tree(dst):
    ignore = shutil.ignore_patterns("target", ".cache", ".git", "node_modules")
    for name in os.listdir(ROOT):
        if name in ("target", ".cache", ".git"):
            continue
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dst, name), ignore=ignore)
        else:
            shutil.copy2(src, os.path.join(dst, name))


def run_tests(tree):
    env = dict(os.environ, CARGO_TARGET_DIR=os.environ.get("MUTANTS_TARGET_DIR", os.path.join(ROOT, ".cache/target-mutants")))
    start = time.time()
    out = subprocess.run(["cargo", "test", "--test", "diffusion", "transport::"],
                         cwd=tree, env=env, capture_output=True, text=True)
    text = out.stdout + out.stderr
    if "error[" in text or "could not compile" in text:
        sys.exit(f"the tree did not compile:\n{text[-3000:]}")
    failed = re.findall(r"^    (transport::\S+)$", text, re.M)
    passed = re.search(r"test result: \w+\. (\d+) passed; (\d+) failed", text)
    return out.returncode, sorted(set(failed)), passed, time.time() - start


def main():
    chosen = [m for m in MUTANTS if len(sys.argv) < 2 or m[0] in sys.argv[1:]]
    survivors = 0
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "tree")
        copy_tree(tree)
        code, failed, counts, secs = run_tests(tree)
        print(f"control (no bug): exit {code}, {counts.group(0) if counts else '?'} ({secs:.0f} s)",
              flush=True)
        if code != 0:
            sys.exit(f"the untouched tests fail: {failed}")
        for name, path, old, new in chosen:
            file = os.path.join(tree, path)
            text = open(file).read()
            if text.count(old) != 1:
                sys.exit(f"{name}: expected exactly one {old!r} in {path}, found {text.count(old)}")
            open(file, "w").write(text.replace(old, new))
            code, failed, counts, secs = run_tests(tree)
            open(file, "w").write(text)
            caught = code != 0 and failed
            survivors += not caught
            print(f"{name}: {'caught' if caught else 'SURVIVED'} ({secs:.0f} s) by "
                  f"{len(failed)} test(s): {', '.join(failed) or '-'}", flush=True)
    print(f"{len(chosen) - survivors} of {len(chosen)} planted bugs caught")
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
