"""`make reproduce-cifar` on a CPU: the estimate scales the timed step to each run, names the way
on (FORCE=1) and the CPU-scale run instead, and stops; with CUDA it lets the target go on."""

from __future__ import annotations

import torch

from l0repro.bench import eta

TABLE2 = "table2/wrn_c10_dropout,table2/wrn_c100_l0_001"


def test_without_cuda_it_estimates_names_the_alternatives_and_stops(monkeypatch, capsys):
    timed = []

    def per_image(cfg, device, batch, steps):
        timed.append(str(cfg.model.name))
        return 0.01 if cfg.model.depth == 28 else 0.001  # seconds per training image

    monkeypatch.setattr(eta, "seconds_per_image", per_image)
    code = eta.main(["--gpu-job", "--device", "cpu", "--seeds", "0,1", TABLE2])
    out = capsys.readouterr().out
    assert code == 1
    # 0.01 s/image x 128 = 1.28 s a step; 200 epochs x 391 steps = 78200 steps: 100096 s = 27.8 h
    assert "table2/wrn_c10_dropout: wrn-28-10 dropout, 200 epochs x 391 steps of 128" in out
    assert "1.28 s a step, 27.8 h a run" in out
    assert "all 4 run(s): about 4.6 days" in out  # 2 experiments x 2 seeds x 100096 s
    assert "make reproduce-cifar FORCE=1" in out
    # table2s: WRN-16-1, 20 epochs: 0.001 x 128 x 7820 = 1001 s
    assert "about 17 min a run here" in out
    assert "python -m l0repro.train experiment=table2s/wrn16_c10_l0_001" in out
    assert timed == ["wrn-28-10", "wrn-28-10", "wrn-16-1"]  # dropout, l0, the CPU-scale row: once each


def test_with_cuda_it_lets_the_job_go_on_without_timing(monkeypatch, capsys):
    monkeypatch.setattr(eta, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(eta, "seconds_per_image", lambda *a: (_ for _ in ()).throw(AssertionError("timed")))
    assert eta.main(["--gpu-job", TABLE2]) == 0
    assert capsys.readouterr().out == ""


def test_a_real_timing_gives_a_positive_time_per_image():
    cfg = eta.compose_experiment("table2s/wrn16_c10_l0_001")
    assert 0 < eta.seconds_per_image(cfg, torch.device("cpu"), batch=2, steps=1) < 10
