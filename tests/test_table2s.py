"""Table 2 at CPU scale (``conf/experiment/table2s``): the recipe each row shares, and the pairs."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR, compose_train

ROWS = sorted(p.stem for p in (CONF_DIR / "experiment" / "table2s").glob("*.yaml"))


def test_table2s_has_dropout_and_shared_and_per_example_l0_rows():
    assert "wrn16_c10_dropout" in ROWS and "wrn16_c10_l0_001" in ROWS
    l0 = [r for r in ROWS if "_l0_" in r]
    assert len(l0) == 6 and all(f"{r}_pe" in ROWS for r in l0 if not r.endswith("_pe"))


@pytest.mark.parametrize("pe", ["", "_pe"])
def test_the_papers_second_lambda_differs_from_the_first_row_only_in_lambda(pe):
    second = OmegaConf.to_container(compose_train([f"experiment=table2s/wrn16_c10_l0_002{pe}"]), resolve=True)
    first = OmegaConf.to_container(compose_train([f"experiment=table2s/wrn16_c10_l0_001{pe}"]), resolve=True)
    names = (second.pop("name"), first.pop("name"))
    assert names == (f"table2s/wrn16_c10_l0_002{pe}", f"table2s/wrn16_c10_l0_001{pe}")
    assert (second["model"].pop("lambdas"), first["model"].pop("lambdas")) == (0.002, 0.001)
    assert second == first


@pytest.mark.parametrize("row", ROWS)
def test_table2s_row_follows_the_papers_recipe_at_cpu_scale(row):
    cfg = compose_train([f"experiment=table2s/{row}"])
    assert cfg.name == f"table2s/{row}"  # its own name: the report never takes it for Table 2
    assert (cfg.data.name, cfg.model.name) == ("cifar10", "wrn-16-1")
    assert (cfg.trainer.batch_size, cfg.trainer.weight_decay, cfg.trainer.ema_decay) == (128, 5e-4, 0.99)
    assert cfg.optim.nesterov and (cfg.optim.lr, cfg.optim.momentum) == (0.1, 0.9)
    # the paper's lr drops at 60/120/160 of 200 epochs, at the same fractions of this schedule
    epochs = cfg.trainer.epochs
    assert [m / epochs for m in cfg.scheduler.milestones] == [0.3, 0.6, 0.8]
    assert cfg.scheduler.gamma == 0.2
    assert cfg.trainer.bf16 is False  # bf16 autocast is ~10x slower on the AVX2 CPU it is sized for
    if row.endswith("dropout"):
        assert (cfg.model.method, cfg.model.dropout_rate) == ("dropout", 0.3)
    else:
        assert cfg.model.method == "l0" and cfg.model.init_drop_rate == 0.3
        assert cfg.model.per_example is row.endswith("_pe")
        assert cfg.trainer.log_gate_grads is True


@pytest.mark.parametrize("row", [r for r in ROWS if r.endswith("_pe")])
def test_per_example_row_differs_from_its_shared_twin_only_in_sampling(row):
    pe = OmegaConf.to_container(compose_train([f"experiment=table2s/{row}"]), resolve=True)
    shared = OmegaConf.to_container(compose_train([f"experiment=table2s/{row[:-3]}"]), resolve=True)
    assert pe.pop("name") == shared.pop("name") + "_pe"
    assert (pe["model"].pop("per_example"), shared["model"].pop("per_example")) == (True, False)
    assert pe == shared


def test_table2s_header_says_it_is_not_a_paper_row():
    for row in ROWS:
        head = (CONF_DIR / "experiment" / "table2s" / f"{row}.yaml").read_text().split("defaults:")[0]
        assert "CPU scale" in head and "never" in head.lower(), row

