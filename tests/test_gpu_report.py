"""The GPU lease's figures: collected from what the lease writes, then written up (results/gpu.md)."""

from __future__ import annotations

import json

from l0repro.gpu_report import collect, main, render

GPU = "NVIDIA H200"


def run_summary(experiment: str, error: float, status: str = "complete", **extra) -> dict:
    return {"experiment": experiment, "seed": 0, "status": status, "epochs": 200,
            "epochs_completed": 200, "steps": 120000, "test_error_final": error,
            "architecture": [219, 214, 100], "full_architecture": [784, 300, 100],
            "expected_flops_final": 1e5, "flops_dense": 532400, "wall_time_s": 55.0,
            "device": GPU, **extra}


def write_records(root, cpu_error: float, graph_error: float) -> None:
    (root / "steps.tsv").write_text("1a_pytest\tok\t40\t\n4_cifar_wrn_l0_short\tcut_off\t90\t"
                                    "ran into its deadline at 505 s (rc 124)\n")
    (root / "env.txt").write_text(f"Fri ... nvidia-smi table\npython 3.12.3 torch 2.11.0+cu130 cuda 13.0 "
                                  f"hydra 1.3.8 omegaconf 2.3.1 gpu: {GPU}\n")
    (root / "pytest.xml").write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1" time="12.5">'
        '<testcase classname="tests.test_device" name="test_ok"/>'
        '<testcase classname="tests.test_device" name="test_bad"><failure message="boom"/></testcase>'
        '<testcase classname="tests.test_gate_bank" name="test_cpu"><skipped/></testcase>'
        '</testsuite></testsuites>')
    for name, err in (("check/mlp_2ep_cpu", cpu_error), ("check/mlp_2ep_eager", cpu_error + 0.001),
                      ("check/mlp_2ep_graph", graph_error), ("table1/mlp_l0/seed0", 0.014)):
        (root / "runs" / name).mkdir(parents=True)
        (root / "runs" / name / "summary.json").write_text(json.dumps(run_summary("table1/mlp_l0", err)))
    short = root / "runs" / "gpu_short" / "wrn" / "seed0"
    short.mkdir(parents=True)
    (short / "summary.json").write_text(json.dumps(run_summary("table2/wrn_c10_l0_001", 0.2,
                                                               status="running", epochs_completed=31)))
    budget = root / "runs" / "gpu_short" / "wrn_flops70" / "seed0"
    budget.mkdir(parents=True)
    (budget / "summary.json").write_text(json.dumps(run_summary(
        "table2/wrn_c10_l0_001", 0.3, status="running", epochs_completed=30, target_flops=0.7,
        expected_flops_final=0.72 * 532400, flops_pruned=0.8 * 532400, constraint_met=False)))
    (root / "bench_library.json").write_text(json.dumps({"results": [{
        "model": "torchvision resnet18, every block's conv1 gated", "closed": 0.5, "compact_s": 0.4,
        "max_rel_diff": 3e-7, "exact": True, "exact_bound": 1e-5, "flops_pruned": 40.0,
        "flops_dense": 80.0, "batch_size": 256, "gated_images_per_s": 20000.0,
        "compact_images_per_s": 30000.0, "speedup": 1.5}]}))
    (root / "bench_mnist_graph.json").write_text(json.dumps({"step": "cuda_graph", "results": [
        {"model": "mlp", "loop": "L0", "s_per_epoch": 0.25, "dense_s_per_epoch": 0.2,
         "overhead_pct": 25.0}]}))
    (root / "bench_wrn_eager.json").write_text(json.dumps({"args": {"compile": False}, "results": [
        {"method": m, "images_per_s": ips, "ms_per_step": 128e3 / ips, "tflops": 100.0}
        for m, ips in (("l0", 6000.0), ("dropout", 6600.0))]}))
    (root / "cifar_data.txt").write_text("real CIFAR-10, labelled subset")


def test_collect_and_render_name_the_gpu_and_judge_every_target(tmp_path):
    write_records(tmp_path, cpu_error=0.030, graph_error=0.045)
    fig = collect(tmp_path, budget=540, elapsed=530, tiny=False)
    assert fig["device"] == GPU and fig["torch"] == "2.11.0+cu130"
    assert fig["pytest"]["passed"] == 1 and fig["pytest"]["failed"] == ["tests.test_device::test_bad: boom"]
    page = render(fig)
    assert page.startswith(f"# Figures measured on a GPU: {GPU}")
    assert "check/mlp_2ep_eager: 3.10 % vs CPU 3.00 %" in page and "**within noise**" in page
    assert "check/mlp_2ep_graph: 4.50 % vs CPU 3.00 %" in page and "**OUTSIDE noise**" in page
    assert "| table1/mlp_l0/seed0 | complete | 200 | 55.0 | 1.40 % | 219-214-100 |" in page
    assert "| mlp | cuda_graph | L0 | 0.250 | 0.200 | 25.0 % | 50 |" in page
    assert "L0 6000 images/s (target >= 5000: met)" in page and "+10.0 % time vs dropout" in page
    assert "within 5 %: MISSED" in page
    assert "31 of 200" in page and "not the paper's row" in page
    assert "ran into its deadline at 505 s" in page
    assert "Outputs differ by 3.0e-07 of their scale (bound 1e-05): **exact**" in page
    assert "gated 20000 images/s, compact 30000 images/s (1.50x)" in page
    assert "| gpu_short/wrn_flops70/seed0 | running | 30 of 200 |" in page
    assert "| 70.00 % (MISSED) | 72.00 % | 80.00 % |" in page and "| none (penalty) |" in page


def test_a_lease_without_the_library_step_says_so(tmp_path):
    write_records(tmp_path, 0.03, 0.03)
    (tmp_path / "bench_library.json").unlink()
    assert "Library (compact of a gated resnet18 on the device): not measured." in render(
        collect(tmp_path, budget=540, elapsed=530, tiny=False))


def test_the_page_is_written_from_the_fetched_out_dir(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    write_records(records, 0.03, 0.03)
    out = tmp_path / "out"
    out.mkdir()
    main(["--collect", str(records), str(out / "figures.json"), "--elapsed", "500"])
    main([str(out), "--out", str(tmp_path / "gpu.md")])
    assert (tmp_path / "gpu.md").read_text().startswith(f"# Figures measured on a GPU: {GPU}")
