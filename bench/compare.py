"""Run metanas's benchmarks and the peer (PyTorch) scripts side by side, interleaved, and print the ratios.

    python bench/compare.py --peer-python /path/to/peer-venv/bin/python            # all workloads, 2 rounds
    python bench/compare.py --peer-python ... --only w3,w4 --rounds 1
    make bench                                                                      # builds the peer venv too
    bench/gpu/run.sh                  # the same on one NVIDIA GPU (peers through bench/gpu/torch_on_cuda.py)

Each round runs peer then metanas for every workload (A B A B), as ../shared/bench/README.md asks on a shared VM.
Every script prints one JSON line; this reads the headline figure of each, takes the median over rounds, and
prints a markdown table (stderr) and one JSON line (stdout) (``{"workload": "compare", ...}``). Without ``--peer-python`` the
peer figures are the published ones in ../shared/bench/README.md (marked "published").
``--args NAME='...'`` passes arguments to one script (``w2``: metanas's, ``peer:w2``: the peer's), ``--peer-wrapper``
runs each peer script through a launcher (``peer-python WRAPPER SCRIPT ARGS``), ``--budget-s`` stops starting scripts
once the whole run has taken that long (and caps each script's timeout at what is left), ``--meta k=v`` adds keys to
the JSON line, ``--no-published`` leaves out the published (CPU) peer figures, ``--before DIR`` also runs the bench
scripts of an earlier checkout in the same rounds (peer, before, metanas) for a change's before/after ratios. W5 has no
peer.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER_DIR = HERE.parent.parent / "shared" / "bench"

# workload -> (peer script, metanas script, [(label, peer key path, metanas key path, published peer value, lower is better)])
WORKLOADS = {
    "w1": ("w1_darts_nb201.py", "w1_darts_nb201.py", [
        ("W1 DARTS 1st-order step, s", "median_s_per_step", "median_s_per_step", 3.954, True),
        ("W1 DARTS 2nd-order step, finite-difference HVP as DARTS-V2, s (peer: published DARTS-V2)", None,
         "second_order_fd_median_s_per_step", 8.75, True),
        ("W1 DARTS 2nd-order step, exact unrolled hypergradient (more work than the peer), s", None,
         "second_order_median_s_per_step", 8.75, True),
        ("W1 time to first step, s", None, "compile_s", None, True)]),
    "w2": ("w2_maml_handwritten.py", "w2_maml_omniglot.py", [
        ("W2 MAML 2nd order, s/meta-iter", "second_order.median_s_per_meta_iter",
         "second_order.median_s_per_meta_iter", 4.566, True),
        ("W2 MAML 1st order, s/meta-iter", "first_order.median_s_per_meta_iter",
         "first_order.median_s_per_meta_iter", 2.598, True)]),
    "w3": ("w3_reptile_omniglot.py", "w3_reptile_omniglot.py", [
        ("W3 Reptile, s/meta-iter", "median_s_per_meta_iter", "median_s_per_meta_iter", 0.2638, True)]),
    "w4": ("w4_predictor.py", "w4_predictor.py", [
        ("W4 predictor inference, pairs/s", "inference_pairs_per_s", "inference_pairs_per_s", 1.36e6, False),
        ("W4 predictor training, s / 200 epochs", "train_median_s_200_epochs", "train_median_s_200_epochs", 1.151, True)]),
    "w5": (None, "w5_stream_rank.py", [
        ("W5 DARTS-space candidates ranked (streamed top-k), candidates/s", None, "candidates_per_s", None, False)]),
}


def get(d: dict, path: str | None):
    if path is None:
        return None
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def run_json(python: str, script: Path, timeout: float, args: list[str] = (), wrapper: str | None = None,
             env: dict | None = None) -> dict:
    """Run one benchmark script (through ``wrapper`` if given); its last stdout line that parses as JSON."""
    cmd = [python] + ([wrapper] if wrapper else []) + [str(script), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{script} failed ({p.returncode}): {p.stderr.strip().splitlines()[-1:]}")
    for line in reversed(p.stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    raise RuntimeError(f"{script} printed no JSON line")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", help="python of a venv with the peer's torch (see ../shared/bench/README.md)")
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated subset of " + ",".join(WORKLOADS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--log", default="bench/compare_raw.jsonl", help="append every raw JSON result here")
    ap.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                    help="arguments for one script: w2='4 --orders first_order' (metanas) or peer:w2='4' (peer)")
    ap.add_argument("--peer-wrapper", help="run each peer script as: peer-python WRAPPER SCRIPT ARGS")
    ap.add_argument("--budget-s", type=float, default=None, help="start no script after this many seconds in all")
    ap.add_argument("--no-published", action="store_true",
                    help="no published peer figures: ratios only against peers measured in this run (other machines)")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="extra keys for the JSON line")
    ap.add_argument("--before", metavar="DIR", help="a checkout of an earlier metanas (git worktree): its bench scripts "
                    "run in the same rounds (peer, before, metanas), for before/after ratios of a change")
    a = ap.parse_args()
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    bad = [n for n in names if n not in WORKLOADS]
    if bad:
        sys.exit(f"compare: error: unknown workload(s) {bad}; choose from {list(WORKLOADS)}")
    if a.before and not (Path(a.before) / "metanas").is_dir():
        sys.exit(f"compare: error: --before {a.before} holds no metanas/ package; pass a checkout (git worktree add)")
    if a.peer_python and not Path(a.peer_python).exists():
        sys.exit(f"compare: error: --peer-python {a.peer_python} does not exist; pass a venv's bin/python")
    script_args: dict[str, list[str]] = {}
    for spec in a.args:
        name, eq, value = spec.partition("=")
        if not eq or name.removeprefix("peer:") not in WORKLOADS:
            sys.exit(f"compare: error: --args {spec!r}: expected NAME=ARGS with NAME one of {list(WORKLOADS)} "
                     "(or peer:NAME)")
        script_args[name] = shlex.split(value)
    meta = dict(m.partition("=")[::2] for m in a.meta)
    ours: dict[str, list[dict]] = {n: [] for n in names}
    peer: dict[str, list[dict]] = {n: [] for n in names}
    before: dict[str, list[dict]] = {n: [] for n in names}
    before_env = None
    if a.before:
        import os

        before_env = {**os.environ, "PYTHONPATH": str(Path(a.before).resolve())}
    t0 = time.perf_counter()
    for r in range(a.rounds):
        for n in names:
            peer_script, our_script, _ = WORKLOADS[n]
            jobs = ([("peer", a.peer_python, PEER_DIR / peer_script, peer, script_args.get(f"peer:{n}", []),
                      a.peer_wrapper, None)] if a.peer_python and peer_script else []) + \
                ([("before", sys.executable, Path(a.before) / "bench" / our_script, before, script_args.get(n, []),
                   None, before_env)] if a.before else []) + \
                [("metanas", sys.executable, HERE / our_script, ours, script_args.get(n, []), None, None)]
            for who, python, script, store, args, wrapper, env in jobs:
                left = None if a.budget_s is None else a.budget_s - (time.perf_counter() - t0)
                if left is not None and left <= 0:
                    print(f"[round {r + 1}/{a.rounds}] {who} {script.name}: skipped (--budget-s spent)",
                          file=sys.stderr, flush=True)
                    continue
                print(f"[round {r + 1}/{a.rounds}] {who} {script.name} {' '.join(args)}", file=sys.stderr, flush=True)
                try:
                    res = run_json(python, script, a.timeout if left is None else min(a.timeout, left), args, wrapper,
                                   env)
                except (RuntimeError, subprocess.TimeoutExpired) as e:  # report it, go on with the others
                    print(f"  failed: {e}", file=sys.stderr, flush=True)
                    continue
                store[n].append(res)
                with open(a.log, "a") as f:  # every raw result, as it arrives
                    f.write(json.dumps({"round": r + 1, "who": who, **res}) + "\n")

    rows, out = [], {}
    for n in names:
        for label, pkey, okey, published, lower in WORKLOADS[n][2]:
            ov = [get(d, okey) for d in ours[n]]
            ov = statistics.median(v for v in ov if v is not None) if any(v is not None for v in ov) else None
            pv = [get(d, pkey) for d in peer[n]] if pkey else []
            pv = [v for v in pv if v is not None]
            published = None if a.no_published else published
            src = "measured now" if pv else ("published" if published is not None else "-")
            pm = statistics.median(pv) if pv else published
            ratio = None if ov is None or pm is None else (pm / ov if lower else ov / pm)
            bv = [v for v in (get(d, okey) for d in before[n]) if v is not None]
            bv = statistics.median(bv) if bv else None
            gain = None if ov is None or bv is None else (bv / ov if lower else ov / bv)
            rows.append((label, pm, ov, ratio, src, bv, gain))
            out[label] = {"peer": pm, "metanas": ov, "speedup": ratio, "peer_source": src}
            if a.before:
                out[label] |= {"before": bv, "after_vs_before": gain}
    extra = " before | after vs before |" if a.before else ""
    table = ["| workload | peer (PyTorch) | metanas (JAX) | metanas speed-up | peer figure |" + extra,
             "| --- | ---: | ---: | ---: | --- |" + (" ---: | ---: |" if a.before else "")]
    f = lambda v: "-" if v is None else (f"{v:.4g}" if v < 1e5 else f"{v:.3e}")  # noqa: E731
    x = lambda r: "-" if r is None else f"{r:.2f}x"  # noqa: E731
    for label, pm, ov, ratio, src, bv, gain in rows:
        table.append(f"| {label} | {f(pm)} | {f(ov)} | {x(ratio)} | {src} |" +
                     (f" {f(bv)} | {x(gain)} |" if a.before else ""))
    # the matmul ceiling each metanas process measured (the VM is shared: read the ratios beside it)
    ceilings = [d.get("matmul_gflops_now", d.get("ceiling_gflops_now")) for store in (ours, before)
                for n in names for d in store[n]]
    ceilings = [c for c in ceilings if c is not None]
    ceiling = [round(min(ceilings), 1), round(max(ceilings), 1)] if ceilings else None
    if ceiling:
        table.append(f"\nmatmul ceiling (jitted 2048^2 f32, measured in each metanas process): "
                     f"{ceiling[0]}-{ceiling[1]} GFLOP/s")
    print("\n".join(table), file=sys.stderr)
    print(json.dumps({"workload": "compare", "rounds": a.rounds, "wall_s": round(time.perf_counter() - t0, 1),
                      "matmul_ceiling_gflops": ceiling, **meta, "results": out}))


if __name__ == "__main__":
    main()
