"""The paper's figures from complete runs: FLOPs over training, kept units, error vs FLOPs.

Each figure is drawn only when runs stand behind it; otherwise ``draw_all`` says why not and
removes a stale copy, so the output folder never shows a figure the runs do not support. Every
figure's title names the paper figure it stands for (or says there is none) and the setting of
its runs; legends use the paper's row names and sit outside the axes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry
from matplotlib.ticker import FuncFormatter

from l0repro.record import atomic_write_bytes
from l0repro.report.paper import Paper
from l0repro.report.runs import Run
from l0repro.report.tables import _method_label

MNIST = ("mnist",)
CIFAR = ("cifar10", "cifar100")
FORMATS = ("png", "pdf")
# No timestamps or version strings in the files, so the same runs give the same bytes.
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}
RC = {"svg.hashsalt": "l0repro", "figure.dpi": 100, "savefig.dpi": 150, "font.size": 9}
DATASETS = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
FLOPS = "FLOPs (2 per multiply-add)"
# one colour and one marker per series, so that no two of up to 20 series look alike
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
NEAR_ONE = 1.5  # FLOP ratios below this get compact_speedup's close-up

Groups = dict[tuple, list[Run]]


@dataclass
class Outcome:
    """A figure written to ``paths``, or not drawn for ``reason``."""

    name: str
    caption: str
    paths: list[Path]
    reason: str = ""


def _network(model: str, paper: Paper) -> str:
    return paper.networks.get(model, model.upper() if model.startswith("wrn") else model)


def _label(key: tuple, groups: Groups, paper: Paper, network: bool = False) -> str:
    """The row's name in the paper (``L0, λ = 0.1/N``, ``L0, λ sep.``), else ours; with its
    lambdas and length when the experiment has several rows."""
    experiment, model, _, _, lams, epochs = key
    found = paper.table_row(experiment)
    name = found[1].method if found else _method_label(key, paper)
    # "(ours, CPU scale)": every series of a figure is ours; its title names the setting
    name = re.sub(r"\s*\(ours[^)]*\)$", "", name.replace("lambda", "λ"))
    if network and not name.startswith(_network(model, paper).split("-")[0]):
        name = f"{_network(model, paper)} {name}"
    if sum(k[0] == experiment for k in groups) > 1:
        name += f" (λ {', '.join(f'{x:g}' for x in lams) or '-'}, {epochs} ep)"
    return name


def _setting(keys: list[tuple], groups: Groups, paper: Paper) -> str:
    """Networks, data, schedule and device of these rows: ``MLP, LeNet-5 on MNIST, 200 epochs;
    CPU``; CPU-scale companions (table2s/) say so."""
    parts: dict[str, tuple[list[str], set[int]]] = {}
    for key in sorted(keys, key=lambda k: _model_order(paper, k)):
        nets, epochs = parts.setdefault(DATASETS.get(key[2], key[2]), ([], set()))
        if _network(key[1], paper) not in nets:
            nets.append(_network(key[1], paper))
        epochs.add(key[5])
    text = "; ".join(f"{', '.join(nets)} on {data}, "
                     f"{'/'.join(str(e) for e in sorted(ep))} epochs"
                     for data, (nets, ep) in parts.items())
    devices = sorted({str(r.summary.get("device")) for k in keys for r in groups[k]})
    text += "; " + ("CPU" if devices == ["cpu"] else ", ".join(devices))
    if any(k[0].startswith("table2s/") for k in keys):
        text += " companion (not the paper's setting)"
    return text


def _title(fig, what: str, keys: list[tuple], groups: Groups, paper: Paper) -> None:
    fig.suptitle(f"{what}\n{_setting(keys, groups, paper)}", fontsize=9)


def _layout(fig) -> None:
    """Tight layout below the two-line title."""
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))


def _legend_below(ax, ncol: int = 1) -> None:
    """The axes' legend under them (below the x label), off the data."""
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.30), ncol=ncol,
              frameon=False)


def _count(v: float, _=None) -> str:
    return f"{v / 1e6:g}M" if abs(v) >= 1e6 else f"{v / 1e3:g}k" if abs(v) >= 1e3 else f"{v:g}"


def _figure_legend(fig, axes) -> None:
    """One legend for panels that share their series, under the figure, off the data."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), ncol=min(2, len(seen)), fontsize=7, frameon=False)


def _curve(runs: list[Run], column: str, epoch_rows: bool) -> pd.DataFrame | None:
    """Mean, min and max over seeds of ``column`` against epoch, or None if no run logs it."""
    series = []
    for run in runs:
        m = run.metrics
        if column not in m.columns:
            continue
        if epoch_rows:
            m = m[m["kind"] == "epoch"]
        m = m[["epoch", column]].dropna()
        s = m.groupby(m["epoch"].round(6))[column].last()
        series.append(s.rename(run.source))
    if not series:
        return None
    wide = pd.concat(series, axis=1).sort_index()
    return pd.DataFrame({"mean": wide.mean(axis=1), "min": wide.min(axis=1),
                         "max": wide.max(axis=1)})


def _plot_band(ax, curve: pd.DataFrame, label: str, scale: float = 1.0,
               color: str | None = None) -> None:
    x = curve.index.to_numpy(dtype=float)
    (line,) = ax.plot(x, curve["mean"] * scale, label=label, lw=1.2, color=color)
    if (curve["max"] > curve["min"]).any():
        ax.fill_between(x, curve["min"] * scale, curve["max"] * scale, color=line.get_color(),
                        alpha=0.2, lw=0)


def _plain_log(axis) -> None:
    """Log scale with ticks written as plain numbers (20, 100) rather than 2x10^1."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    # Label the 2s and 5s between decades, so a range inside one decade still has numbers.
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else ""))


def _model_order(paper: Paper, key: tuple) -> tuple:
    """Networks in the paper's order, then datasets in the paper's order, then the key."""
    models, datasets = list(paper.networks), list(MNIST + CIFAR)
    return (models.index(key[1]) if key[1] in models else len(models),
            datasets.index(key[2]) if key[2] in datasets else len(datasets), key)


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{name}.{fmt}"
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=METADATA[fmt], bbox_inches="tight")
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def _grid(n: int, ncols: int, size: tuple[float, float]):
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _flops_panel(ax, keys: list[tuple], groups: Groups, paper: Paper,
                 colors: dict[tuple, str] | None = None, legend: bool = True) -> None:
    dense = groups[keys[0]][0].summary["flops_dense"]
    for key in keys:
        curve = _curve(groups[key], "flops/expected", epoch_rows=False)
        if curve is not None:
            _plot_band(ax, curve, _label(key, groups, paper), color=(colors or {}).get(key))
    ax.axhline(dense, color="k", ls="--", lw=1, label="dense")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"expected {FLOPS}\nper example")
    ax.set_ylim(0, dense * 1.08)  # the dense line stays inside the axes
    ax.yaxis.set_major_formatter(FuncFormatter(_count))
    if legend:
        _legend_below(ax, ncol=3)


def fig_flops_mnist(groups: Groups, paper: Paper, out_dir: Path) -> list[Path] | str:
    """Paper Fig. 3: expected FLOPs during training of each L0 MLP and LeNet-5."""
    keys = [k for k in groups if k[2] in MNIST and k[3] == "l0"]
    if not keys:
        return "no complete L0 runs on MNIST"
    models = sorted({k[1] for k in keys}, key=lambda m: _model_order(paper, (None, m, None)))
    fig, axes = _grid(len(models), 2, (5, 3.8))
    for ax, model in zip(axes, models, strict=True):
        _flops_panel(ax, [k for k in keys if k[1] == model], groups, paper)
        ax.set_title(f"{_network(model, paper)} (mean over seeds, band min-max)")
    _title(fig, "Paper Fig. 3: expected FLOPs during training, L0 rows", keys, groups, paper)
    _layout(fig)
    return _save(fig, out_dir, "fig3_flops_mnist")


def fig_wrn(groups: Groups, paper: Paper, out_dir: Path, prefix: str = "table2/",
            name: str = "fig4_wrn") -> list[Path] | str:
    """Paper Fig. 4: expected FLOPs of the L0 WRNs, and their training curves against dropout
    (the runs of the experiments named ``prefix...``)."""
    keys = [k for k in groups if k[2] in CIFAR and k[0].startswith(prefix)]
    if not keys:
        return f"no complete {prefix} runs on CIFAR"
    datasets = [d for d in CIFAR if any(k[2] == d for k in keys)]
    fig = Figure(figsize=(5 * len(datasets), 10))
    axes = fig.subplots(3, len(datasets), squeeze=False)
    rows = (("test/error", True, 100.0, "test error %"),
            ("train/ce", True, 1.0, "train cross-entropy (epoch mean)"))
    for j, dataset in enumerate(datasets):
        mine = [k for k in keys if k[2] == dataset]
        colors = {k: f"C{i}" for i, k in enumerate(mine)}  # one colour per row in every panel
        l0 = [k for k in mine if k[3] == "l0"]
        data_name = DATASETS.get(dataset, dataset)
        if l0:
            _flops_panel(axes[0][j], l0, groups, paper, colors, legend=False)
        else:
            axes[0][j].text(0.5, 0.5, "no L0 runs", ha="center", transform=axes[0][j].transAxes)
        axes[0][j].set_title(f"{data_name}: expected FLOPs")
        for i, (column, epoch_rows, scale, ylabel) in enumerate(rows, start=1):
            ax = axes[i][j]
            for key in mine:
                curve = _curve(groups[key], column, epoch_rows)
                if curve is not None:
                    _plot_band(ax, curve, _label(key, groups, paper), scale, colors[key])
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{data_name}: {ylabel}")
    what = "Paper Fig. 4" if prefix == "table2/" else "Paper Fig. 4's panels for these runs"
    _title(fig, f"{what}: expected FLOPs, test error and training loss, L0 against dropout"
           " (mean over seeds, band min-max)",
           keys, groups, paper)
    _layout(fig)
    _figure_legend(fig, axes.flat)
    return _save(fig, out_dir, name)


def fig_wrn_cpu(groups: Groups, paper: Paper, out_dir: Path) -> list[Path] | str:
    """Fig. 4 for the CPU-scale companion runs (table2s/)."""
    return fig_wrn(groups, paper, out_dir, prefix="table2s/", name="fig4_wrn_cpu")


GATE_GRADS = (("gates/grad_data_median/", "data, median over gates", "-"),
              ("gates/grad_data/", "data, mean over gates", ":"),
              ("gates/grad_penalty/", "penalty, mean over gates", "--"))


def _layer_mean(run: Run, prefix: str) -> pd.Series | None:
    """Per logged step, the mean over gated layers of the columns ``prefix<layer>``, by epoch."""
    cols = [c for c in run.metrics.columns if c.startswith(prefix)]
    if not cols:
        return None
    m = run.metrics[["epoch", *cols]].dropna()
    return m[cols].mean(axis=1).set_axis(m["epoch"].to_numpy(dtype=float))


def fig_gate_grads_cpu(groups: Groups, paper: Paper, out_dir: Path) -> list[Path] | str:
    """|d/dlog_alpha| of the cross-entropy and of the penalty over training, one panel per
    table2s/ L0 row (``trainer.log_gate_grads``): do the gates learn from the data?"""
    keys = sorted(k for k in groups if k[0].startswith("table2s/") and k[3] == "l0"
                  and any(_layer_mean(r, GATE_GRADS[0][0]) is not None for r in groups[k]))
    if not keys:
        return "no complete table2s/ L0 run logged gate gradients (trainer.log_gate_grads)"
    fig, axes = _grid(len(keys), 2, (5.0, 3.5))
    for ax, key in zip(axes, keys, strict=True):
        for i, run in enumerate(groups[key]):
            for j, (prefix, what, style) in enumerate(GATE_GRADS):
                series = _layer_mean(run, prefix)
                if series is not None:
                    ax.plot(series.index, series.to_numpy(), style, lw=1, color=f"C{j}",
                            label=what if i == 0 else None)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("|d / d log_alpha|, mean over layers")
        ax.set_title(_label(key, groups, paper), fontsize=8)
    shown = list(axes)[:len(keys)]
    low, high = min(a.get_ylim()[0] for a in shown), max(a.get_ylim()[1] for a in shown)
    for ax in shown:  # one scale, so shared and per-example panels compare at a glance
        ax.set_ylim(low, high)
    _title(fig, "No paper figure (docs/paper.md 3b): the gates' gradient from the data and from "
                "the penalty (one line per seed)", keys, groups, paper)
    _layout(fig)
    _figure_legend(fig, shown)
    return _save(fig, out_dir, "gate_grads_wrn_cpu")


def fig_kept_units(groups: Groups, paper: Paper, out_dir: Path) -> list[Path] | str:
    """Kept units per layer of each L0 row, as % of the layer's full width on a linear axis:
    each seed, their mean, and the paper's, with the counts written beside the markers."""
    keys = sorted((k for k in groups if k[3] == "l0"), key=lambda k: _model_order(paper, k))
    if not keys:
        return "no complete L0 runs"
    fig, axes = _grid(len(keys), 2, (5.5, 3.6))
    for ax, key in zip(axes, keys, strict=True):
        runs = groups[key]
        arch = np.array([r.summary["architecture"] for r in runs], dtype=float)
        full = np.array(runs[0].summary["full_architecture"], dtype=float)
        x = np.arange(len(full))
        table = paper.table_for(key[2], key[0])
        prow = table.row_for(key[0]) if table else None
        theirs = prow.arch_units() if prow else None
        has_paper = theirs is not None and len(theirs) == len(full)
        mean = arch.mean(axis=0)
        for seed_arch in arch:
            ax.plot(x - 0.12, seed_arch / full * 100, "o", ms=3, color="C0", alpha=0.5,
                    label="ours, each seed")
        seeds = f"{len(runs)} seed" + ("s" if len(runs) > 1 else "")
        ax.plot(x - 0.12, mean / full * 100, "_", ms=14, mew=2, color="C0",
                label=f"ours, mean of {seeds}")
        for xi, m, f in zip(x, mean, full, strict=True):
            ax.annotate(f"{m:.0f}", (xi - 0.12, m / f * 100), xytext=(-10, 0),
                        textcoords="offset points", ha="right", va="center", fontsize=6,
                        color="C0")
        if has_paper:
            mark = "" if prow.architecture.verified else " ?"
            ax.plot(x + 0.12, np.array(theirs) / full * 100, "D", ms=5, mfc="none", color="C3",
                    label=f"paper{mark}")
            for xi, p, f in zip(x, theirs, full, strict=True):
                ax.annotate(f"{p}", (xi + 0.12, p / f * 100), xytext=(4, 0),
                            textcoords="offset points", ha="left", va="center", fontsize=6,
                            color="C3")
        ax.set_xticks(x, [f"{n}\n(of {int(f)})" for n, f in zip(runs[0].layer_names, full,
                                                                   strict=True)],
                      rotation=45 if len(x) > 6 else 0, ha="right" if len(x) > 6 else "center",
                      fontsize=6)
        ax.set_xlim(-0.6, len(x) - 0.4)
        ax.set_ylim(0, 105)
        ax.set_ylabel("kept units, % of the layer's")
        ax.set_title(f"{_label(key, groups, paper, network=True)} "
                     f"({DATASETS.get(key[2], key[2])})", fontsize=8)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper center",
                  bbox_to_anchor=(0.5, -0.25), ncol=3, frameon=False)
    _title(fig, "Table 1's architecture column (no paper figure): kept units per layer, ours "
                "against the paper's", keys, groups, paper)
    _layout(fig)
    return _save(fig, out_dir, "kept_units")


def fig_error_vs_flops(groups: Groups, paper: Paper, out_dir: Path) -> list[Path] | str:
    """Final test error against expected FLOPs for every complete run, one panel per dataset."""
    if not groups:
        return "no complete runs"
    datasets = sorted({k[2] for k in groups}, key=lambda d: ((MNIST + CIFAR + (d,)).index(d), d))
    fig, axes = _grid(len(datasets), 1, (9, 3.4))
    for ax, dataset in zip(axes, datasets, strict=True):
        keys = sorted((k for k in groups if k[2] == dataset), key=lambda k: _model_order(paper, k))
        xs = []
        for i, key in enumerate(keys):
            s = [r.summary for r in groups[key]]
            x = [v["expected_flops_final"] / v["flops_dense"] * 100 for v in s]
            xs += x
            ax.scatter(x, [v["test_error_final"] * 100 for v in s], s=18,
                       marker=MARKERS[i % len(MARKERS)], color=f"C{i % 10}",
                       label=_label(key, groups, paper, network=True))
        if xs and max(xs) / max(min(xs), 1e-9) >= 3:
            ax.set_xscale("log")
            _plain_log(ax.xaxis)
        ax.set_xlabel(f"expected {FLOPS}, % of dense")
        ax.set_ylabel("test error % (final)")
        ax.set_title(DATASETS.get(dataset, dataset))
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    _title(fig, "No paper figure: final test error against expected FLOPs (Tables 1 and 2), "
                "every complete run", list(groups), groups, paper)
    _layout(fig)
    return _save(fig, out_dir, "error_vs_flops")


def fig_speedup(groups: Groups, paper: Paper, out_dir: Path) -> list[Path] | str:
    """Measured CPU speedup of each compact network against its FLOP ratio (gated / compact)."""
    points = [(key, r) for key, runs in groups.items() for r in runs if r.speedup is not None]
    if not points:
        return "no run has a speedup.json (python -m l0repro.bench compact)"
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    keys = sorted({k for k, _ in points}, key=lambda k: _model_order(paper, k))
    colors = matplotlib.colormaps["tab20"]
    near = [r.speedup for _, r in points if r.speedup["flop_ratio"] < NEAR_ONE]
    # the networks that hardly shrink crowd at (1, 1) on the log axes: a linear close-up, top
    # left, where no point falls (speedups above 3 come only with FLOP ratios above 3)
    inset = ax.inset_axes([0.06, 0.5, 0.3, 0.4]) if len(near) > 1 else None
    for i, key in enumerate(keys):
        sp = [r.speedup for k, r in points if k == key]
        # every other series hollow and on top, so that two series at one point both show
        style = {"marker": MARKERS[i % len(MARKERS)], "edgecolors": colors(i % 20),
                 "facecolors": "none" if i % 2 else colors(i % 20), "linewidths": 1.2,
                 "zorder": 3 if i % 2 else 2}
        ax.scatter([x["flop_ratio"] for x in sp], [x["throughput_speedup"] for x in sp], s=26,
                   label=_label(key, groups, paper, network=True), **style)
        close = [x for x in sp if x["flop_ratio"] < NEAR_ONE]
        if inset is not None and close:
            inset.scatter([x["flop_ratio"] for x in close],
                          [x["throughput_speedup"] for x in close], s=30, **style)
    if inset is not None:
        lo = min(min(x["flop_ratio"], x["throughput_speedup"]) for x in near) - 0.03
        hi = max(max(x["flop_ratio"], x["throughput_speedup"]) for x in near) + 0.03
        inset.plot([lo, hi], [lo, hi], "k--", lw=1)
        inset.set_xlim(lo, hi)
        inset.set_ylim(lo, hi)
        inset.tick_params(labelsize=6)
        inset.set_title(f"close-up, FLOP ratio < {NEAR_ONE:g} (linear)", fontsize=6)
    top = max(max(r.speedup["flop_ratio"], r.speedup["throughput_speedup"]) for _, r in points)
    ax.plot([1, top], [1, top], "k--", lw=1, label="speedup = FLOP ratio")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.set_xlabel("FLOP ratio, gated / compact (FlopCounterMode; 2 FLOPs per multiply-add)")
    ax.set_ylabel("measured throughput speedup, 1 CPU thread")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    _title(fig, "No paper figure (the paper measures no speedup): compact networks' CPU speedup",
           keys, groups, paper)
    _layout(fig)
    return _save(fig, out_dir, "compact_speedup")


FIGURES: dict[str, tuple[Callable, str]] = {
    "fig3_flops_mnist": (fig_flops_mnist, "paper Fig. 3: expected FLOPs during training, MLP "
                                          "and LeNet-5 on MNIST"),
    "fig4_wrn": (fig_wrn, "paper Fig. 4: WRN-28-10, expected FLOPs, test error and training "
                          "loss over epochs, L0 against dropout"),
    "fig4_wrn_cpu": (fig_wrn_cpu, "paper Fig. 4's panels at CPU scale (WRN-16-1, CIFAR-10, "
                                  "20 epochs; not the paper's setting): expected FLOPs, test "
                                  "error and training loss over epochs, L0 with shared and "
                                  "per-example gates against dropout"),
    "gate_grads_wrn_cpu": (fig_gate_grads_cpu, "no paper figure (docs/paper.md 3b): at CPU "
                                               "scale, the gates' gradient from the data "
                                               "(cross-entropy) and from the penalty over "
                                               "training, shared against per-example samples"),
    "kept_units": (fig_kept_units, "no paper figure (Table 1's architecture column): kept "
                                   "units per layer, ours against the paper's"),
    "compact_speedup": (fig_speedup, "no paper figure: compact networks' measured CPU throughput "
                                     "speedup against their FLOP ratio, every benchmarked run of "
                                     "a table row (selection runs keep theirs in their "
                                     "speedup.json)"),
    "error_vs_flops": (fig_error_vs_flops, "no paper figure: final test error against expected "
                                           "FLOPs, every complete run of a table row"),
}


def draw_all(groups: Groups, paper: Paper, out_dir: Path) -> list[Outcome]:
    """Draw every figure that has runs behind it into ``out_dir`` (PNG and PDF)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    with matplotlib.rc_context(RC):
        for name, (draw, caption) in FIGURES.items():
            result = draw(groups, paper, out_dir)
            if isinstance(result, str):
                for fmt in FORMATS:
                    (out_dir / f"{name}.{fmt}").unlink(missing_ok=True)
                outcomes.append(Outcome(name, caption, [], result))
            else:
                outcomes.append(Outcome(name, caption, result))
    return outcomes
