"""The GPU lease's figures: collected on the device, written up here as ``results/gpu.md``.

    python -m l0repro.gpu_report --collect RECORDS OUT/figures.json   (scripts/gpu_lease.sh, on the GPU)
    python -m l0repro.gpu_report OUT_DIR [--out results/gpu.md]        (here, on the fetched $OUT)

``--collect`` reads only what the lease wrote under RECORDS: steps.tsv (each step's status,
seconds and note), pytest.xml, the bench JSONs and the run records under runs/. The page says
which GPU every figure comes from, and labels the CIFAR-10 run a short-budget row.
"""

from __future__ import annotations

import argparse
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

TARGETS = {  # the targets
    "mlp_200_epochs_s": 60, "lenet5_200_epochs_s": 180, "wrn_l0_images_per_s": 5000,
    "wrn_l0_vs_dropout_pct": 5,
}
RUN_KEYS = ("experiment", "seed", "status", "epochs", "epochs_completed", "steps", "test_error_final",
            "architecture", "full_architecture", "expected_flops_final", "flops_dense", "wall_time_s",
            "device", "flops_pruned", "target_flops", "constraint_final", "constraint_met")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pytest(path: Path) -> dict[str, Any] | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    failed = []
    for case in suite.iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            failed.append(f"{case.get('classname')}::{case.get('name')}: {bad.get('message', '')[:300]}")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed": failed, "seconds": float(suite.get("time", 0))}


def collect(records: Path, budget: float, elapsed: float, tiny: bool) -> dict[str, Any]:
    """Every figure of one lease, from the files it wrote under ``records``."""
    steps = []
    if (records / "steps.tsv").exists():
        for line in (records / "steps.tsv").read_text().splitlines():
            name, status, seconds, note = (line.split("\t") + ["", "", "", ""])[:4]
            steps.append({"step": name, "status": status, "seconds": int(seconds or 0), "note": note})
    runs = {}
    for summary in sorted((records / "runs").rglob("summary.json")):
        s = _json(summary) or {}
        runs[str(summary.parent.relative_to(records / "runs"))] = {k: s.get(k) for k in RUN_KEYS}
    # env.txt's last line: "python X torch Y cuda Z hydra H omegaconf O gpu: NAME" (gpu_lease.sh)
    env = (records / "env.txt").read_text().splitlines() if (records / "env.txt").exists() else []
    env_line = next((line for line in reversed(env) if line.startswith("python ")), "")
    gpu = env_line.partition("gpu: ")[2].strip()
    words = env_line.split()
    torch_version = words[words.index("torch") + 1] if "torch" in words[:-1] else None
    device = gpu if gpu and gpu != "none" else next(
        (r["device"] for r in runs.values() if r.get("device") not in (None, "cpu")), None)
    benches = {p.stem: _json(p) for p in sorted(records.glob("bench_*.json"))}
    cifar = records / "cifar_data.txt"
    return {
        "device": device or "cpu", "torch": torch_version, "tiny": tiny,
        "budget_s": budget, "elapsed_s": elapsed, "steps": steps,
        "pytest": _pytest(records / "pytest.xml"), "runs": runs, "benches": benches,
        "cifar_data": cifar.read_text().strip() if cifar.exists() else None,
    }


# ---------------------------------------------------------------------------- the page
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join("-" if v is None else str(v) for v in row) + " |" for row in rows]
    return out + [""]


def two_epoch_check(runs: dict[str, dict]) -> list[str]:
    """The 2-epoch MLP runs on the device and on the CPU: equal within sampling noise?"""
    cpu = runs.get("check/mlp_2ep_cpu", {}).get("test_error_final")
    lines = []
    for name in ("check/mlp_2ep_eager", "check/mlp_2ep_graph"):
        err = runs.get(name, {}).get("test_error_final")
        if err is None or cpu is None:
            lines.append(f"- {name}: {_pct(err)} vs CPU {_pct(cpu)}: not both measured")
            continue
        # two independent runs (other noise streams): 3 standard errors of a difference of two
        # test errors on 10,000 images
        p = (err + cpu) / 2
        bound = 3 * math.sqrt(2 * p * (1 - p) / 10000)
        verdict = "within noise" if abs(err - cpu) <= bound else "OUTSIDE noise"
        lines.append(f"- {name}: {_pct(err)} vs CPU {_pct(cpu)}: difference "
                     f"{100 * abs(err - cpu):.2f} points, bound {100 * bound:.2f}: **{verdict}**")
    return lines + [""]


def library_check(b: dict[str, Any] | None) -> list[str]:
    """The library step (bench library): compact of a gated resnet18 on the device."""
    r = ((b or {}).get("results") or [None])[0]
    if r is None:
        return ["Library (compact of a gated resnet18 on the device): not measured.", ""]
    verdict = "**exact**" if r["exact"] else "**NOT EXACT**"
    return [f"Library: {r['model']}, {100 * r['closed']:.0f} % of the gated maps closed, compacted "
            f"on the device in {r['compact_s']:.2f} s. Outputs differ by {r['max_rel_diff']:.1e} of "
            f"their scale (bound {r['exact_bound']:.0e}): {verdict}. FLOPs "
            f"{100 * r['flops_pruned'] / r['flops_dense']:.1f} % of dense; at batch "
            f"{r['batch_size']}, gated {r['gated_images_per_s']:.0f} images/s, compact "
            f"{r['compact_images_per_s']:.0f} images/s ({r['speedup']:.2f}x).", ""]


def render(fig: dict[str, Any]) -> str:
    gpu = fig["device"]
    lines = [f"# Figures measured on a GPU: {gpu}", "",
             f"From one lease of `scripts/gpu_lease.sh` (torch {fig['torch']}), "
             f"{fig['elapsed_s']} s of a {fig['budget_s']} s budget. Every figure below is from "
             f"the {gpu}.", ""]
    if fig.get("tiny"):
        lines += ["**A tiny dry run (`--tiny`): the sizes are not the real ones; no figure here "
                  "means anything but that the script works.**", ""]
    lines += ["## Steps", ""]
    lines += _table(["step", "status", "seconds", "note"],
                    [[s["step"], s["status"], s["seconds"], s["note"]] for s in fig["steps"]])
    runs, benches = fig["runs"], fig["benches"]

    lines += ["## 1. CUDA correctness", ""]
    pt = fig.get("pytest")
    if pt:
        lines += [f"pytest (gates, layers, gate bank, FLOPs, augmentation, device tests): "
                  f"{pt['passed']} passed, {pt['failures'] + pt['errors']} failed, "
                  f"{pt['skipped']} skipped in {pt['seconds']:.0f} s.", ""]
        lines += [f"- FAILED {f}" for f in pt["failed"]] + ([""] if pt["failed"] else [])
    else:
        lines += ["pytest wrote no report (see the steps).", ""]
    lines += ["2-epoch L0 MLP (table1/mlp_l0), test error on the device and on the CPU:", ""]
    lines += two_epoch_check(runs)
    lines += library_check(benches.get("bench_library"))

    lines += ["## 2. MNIST speed", ""]
    rows = []
    for key in ("bench_mnist_eager", "bench_mnist_graph"):
        b = benches.get(key)
        for r in (b or {}).get("results", []):
            rows.append([r["model"], b["step"], r["loop"], f"{r['s_per_epoch']:.3f}",
                         f"{r['dense_s_per_epoch']:.3f}", f"{r['overhead_pct']:.1f} %",
                         f"{200 * r['s_per_epoch']:.0f}"])
    lines += ["Seconds per training epoch (600 steps, evaluation not timed; bench mnist):", ""]
    lines += _table(["model", "step", "loop", "s/epoch", "dense s/epoch", "gate overhead",
                     "200 epochs, s (projected)"], rows) if rows else ["not measured", ""]
    t1 = {k: v for k, v in runs.items() if k.startswith("table1/")}
    lines += [f"200-epoch Table 1 runs with `trainer.cuda_graph=true` (targets: MLP <= "
              f"{TARGETS['mlp_200_epochs_s']} s, LeNet-5 <= {TARGETS['lenet5_200_epochs_s']} s; "
              "table1/mlp_l0 seed 0 ran alone, the others several at a time, so their wall "
              "times are not solo times):", ""]
    lines += _table(["run", "status", "epochs", "wall s", "test error", "architecture"],
                    [[k, r["status"], r["epochs_completed"], r["wall_time_s"],
                      _pct(r["test_error_final"]), "-".join(map(str, r["architecture"] or []))]
                     for k, r in sorted(t1.items())]) if t1 else ["none ran", ""]

    lines += ["## 3. WRN-28-10 training throughput", ""]
    rows, by = [], {}
    for key, b in benches.items():
        if not key.startswith("bench_wrn") or not b:
            continue
        step = "compiled" if b["args"].get("compile") else "eager"
        for r in b["results"]:
            by[(r["method"], step)] = r["images_per_s"]
            rows.append([r["method"], step, f"{r['images_per_s']:.0f}", f"{r['ms_per_step']:.1f}",
                         f"{r['tflops']:.1f}", f"{r.get('utilisation_pct', float('nan')):.1f} %"])
    lines += _table(["method", "step", "images/s", "ms/step", "TFLOP/s", "of peak"], rows) \
        if rows else ["not measured", ""]
    for step in ("eager", "compiled"):
        l0, drop = by.get(("l0", step)), by.get(("dropout", step))
        if l0 and drop:
            slower = 100 * (drop / l0 - 1)
            ips, pct = TARGETS["wrn_l0_images_per_s"], TARGETS["wrn_l0_vs_dropout_pct"]
            lines.append(f"- {step}: L0 {l0:.0f} images/s (target >= {ips}: "
                         f"{'met' if l0 >= ips else 'MISSED'}), a step {slower:+.1f} % time vs "
                         f"dropout (target within {pct} %: {'met' if slower <= pct else 'MISSED'})")
    lines += [""]

    lines += ["## 4. CIFAR-10, short budget (not the paper's row)", ""]
    short = {k: v for k, v in runs.items() if k.startswith("gpu_short/")}
    lines += [f"Data: {fig.get('cifar_data')}. The L0 WRN with table2/wrn_c10_l0_001's settings "
              "on the 200-epoch schedule, stopped at the lease's deadline: a labelled short-budget "
              "row, never Table 2's.", ""]
    lines += ["Beside it, the same WRN with lambda 0 and `trainer.target_flops=0.70` (training to "
              "a budget): expected and pruned FLOPs against the target.", ""]
    rows = []
    for k, r in sorted(short.items()):
        dense = r.get("flops_dense")
        expected = r["expected_flops_final"] / dense if dense else None
        pruned = r["flops_pruned"] / dense if dense and r.get("flops_pruned") is not None else None
        met = {True: "met", False: "MISSED"}.get(r.get("constraint_met"), "-")
        target = f"{_pct(r['target_flops'])} ({met})" if r.get("target_flops") else "none (penalty)"
        rows.append([k, r["status"], f"{r['epochs_completed']} of {r['epochs']}", r["wall_time_s"],
                     _pct(r["test_error_final"]), target, _pct(expected), _pct(pruned),
                     f"{'-'.join(map(str, r['architecture'] or []))} of "
                     f"{'-'.join(map(str, r['full_architecture'] or []))}"])
    lines += _table(["run", "status", "epochs", "wall s", "test error", "FLOPs target",
                     "expected FLOPs", "pruned FLOPs", "kept maps"], rows) if rows else ["did not run", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m l0repro.gpu_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="OUT_DIR holding figures.json; with --collect, the records dir")
    p.add_argument("target", nargs="?", help="with --collect: the figures.json to write")
    p.add_argument("--collect", action="store_true")
    p.add_argument("--budget", type=float, default=540)
    p.add_argument("--elapsed", type=float, default=0)
    p.add_argument("--tiny", type=int, default=0)
    p.add_argument("--out", default="results/gpu.md", help="the page to write (default results/gpu.md)")
    args = p.parse_args(argv)
    if args.collect:
        fig = collect(Path(args.source), args.budget, args.elapsed, bool(args.tiny))
        Path(args.target).write_text(json.dumps(fig, indent=2))
        print("\n".join(line for line in render(fig).splitlines() if line.startswith(("|", "-", "pytest"))))
        return
    fig = json.loads((Path(args.source) / "figures.json").read_text())
    Path(args.out).write_text(render(fig) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
