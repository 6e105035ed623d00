"""Run metanas's benchmarks and the peer (PyTorch) scripts side by side, interleaved, and print the ratios.

    python bench/compare.py --peer-python /path/to/peer-venv/bin/python            # all workloads, 2 rounds
    python bench/compare.py --peer-python ... --only w3,w4 --rounds 1
    make bench                                                                      # builds the peer venv too

Each round runs peer then metanas for every workload (A B A B), as ../shared/bench/README.md asks on a shared VM.
Every script prints one JSON line; this reads the headline figure of each, takes the median over rounds, and
prints a markdown table (stderr) and one JSON line (stdout) (``{"workload": "compare", ...}``). Without ``--peer-python`` the
peer figures are the published ones in ../shared/bench/README.md (marked "published").
"""

from __future__ import annotations

import argparse
import json
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
        ("W1 DARTS 2nd-order step, s (peer: published DARTS-V2)", None, "second_order_median_s_per_step", 8.75, True),
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
}


def get(d: dict, path: str | None):
    if path is None:
        return None
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def run_json(python: str, script: Path, timeout: float) -> dict:
    """Run one benchmark script; its last stdout line that parses as JSON."""
    p = subprocess.run([python, str(script)], capture_output=True, text=True, timeout=timeout)
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
    a = ap.parse_args()
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    bad = [n for n in names if n not in WORKLOADS]
    if bad:
        sys.exit(f"compare: error: unknown workload(s) {bad}; choose from {list(WORKLOADS)}")
    if a.peer_python and not Path(a.peer_python).exists():
        sys.exit(f"compare: error: --peer-python {a.peer_python} does not exist; pass a venv's bin/python")
    ours: dict[str, list[dict]] = {n: [] for n in names}
    peer: dict[str, list[dict]] = {n: [] for n in names}
    t0 = time.perf_counter()
    for r in range(a.rounds):
        for n in names:
            peer_script, our_script, _ = WORKLOADS[n]
            jobs = ([("peer", a.peer_python, PEER_DIR / peer_script, peer)] if a.peer_python else []) + \
                [("metanas", sys.executable, HERE / our_script, ours)]
            for who, python, script, store in jobs:
                print(f"[round {r + 1}/{a.rounds}] {who} {script.name}", file=sys.stderr, flush=True)
                try:
                    res = run_json(python, script, a.timeout)
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
            src = "measured now" if pv else ("published" if published is not None else "-")
            pm = statistics.median(pv) if pv else published
            ratio = None if ov is None or pm is None else (pm / ov if lower else ov / pm)
            rows.append((label, pm, ov, ratio, src))
            out[label] = {"peer": pm, "metanas": ov, "speedup": ratio, "peer_source": src}
    table = ["| workload | peer (PyTorch) | metanas (JAX) | metanas speed-up | peer figure |",
             "| --- | ---: | ---: | ---: | --- |"]
    for label, pm, ov, ratio, src in rows:
        f = lambda v: "-" if v is None else (f"{v:.4g}" if v < 1e5 else f"{v:.3e}")
        table.append(f"| {label} | {f(pm)} | {f(ov)} | {'-' if ratio is None else f'{ratio:.2f}x'} | {src} |")
    print("\n".join(table), file=sys.stderr)
    print(json.dumps({"workload": "compare", "rounds": a.rounds, "wall_s": round(time.perf_counter() - t0, 1),
                      "results": out}))


if __name__ == "__main__":
    main()
