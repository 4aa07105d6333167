# Every target that needs Python creates the environment first (.venv, `pip install -e '.[dev]'`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= $(or $(L0REPRO_DATA),data)
SEEDS ?= 0,1,2
CIFAR_SEEDS ?= 0
DATASETS ?=

.PHONY: install data test test-slow lint bench demo reproduce-mnist reproduce-cifar report publish compact clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

# MNIST and CIFAR-10 into $(DATA), md5-checked; DATASETS="mnist cifar10 cifar100" adds CIFAR-100
data: $(STAMP)
	$(BIN)/python -m l0repro.data.fetch --root $(DATA) $(DATASETS)

# one pytest-xdist worker per core, at most 4 (each starts real trainings); TEST_WORKERS=0: serial
TEST_WORKERS ?= auto --maxprocesses 4
test: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m l0repro.bench mnist --data-root $(DATA)
	$(BIN)/python -m l0repro.bench wrn --depth 16 --widen 4 --batch-size 128 --bf16
	$(BIN)/python -m l0repro.bench compact --runs results/runs

# MNIST first (downloaded when absent; without network the message says how to get it), then two
# short runs and their report
demo: $(STAMP)
	$(BIN)/python -m l0repro.data.fetch --root $(DATA) mnist
	$(BIN)/python -m l0repro.train experiment=table1/mlp_l0 trainer.epochs=15 data.root=$(DATA) \
		logger.wandb.mode=disabled hydra.run.dir=experiments/demo/mlp_l0
	$(BIN)/python -m l0repro.train experiment=table1/lenet5_l0 trainer.epochs=3 data.root=$(DATA) \
		logger.wandb.mode=disabled hydra.run.dir=experiments/demo/lenet5_l0
	$(BIN)/python -m l0repro.report --runs experiments/demo --out experiments/demo/report
	@echo "demo runs: experiments/demo/{mlp_l0,lenet5_l0}; tables and figures: experiments/demo/report"

reproduce-mnist: $(STAMP)
	$(BIN)/python -m l0repro.train -m data.root=$(DATA) seed=$(SEEDS) \
		experiment=table1/mlp_l0,table1/mlp_l0_sep,table1/lenet5_l0,table1/lenet5_l0_sep
	$(MAKE) report

# a GPU job: without CUDA it stops at once with the time estimated here from a short timing, and
# what to run instead; FORCE=1 trains anyway
reproduce-cifar: CIFAR_RUNS = table2/wrn_c10_dropout,table2/wrn_c10_l0_001,table2/wrn_c10_l0_002,table2/wrn_c100_dropout,table2/wrn_c100_l0_001,table2/wrn_c100_l0_002
reproduce-cifar: $(STAMP)
	@test -n "$(FORCE)" || $(BIN)/python -m l0repro.bench eta --gpu-job --seeds $(CIFAR_SEEDS) $(CIFAR_RUNS)
	$(BIN)/python -m l0repro.train -m data.root=$(DATA) seed=$(CIFAR_SEEDS) experiment=$(CIFAR_RUNS)
	$(MAKE) report

report: $(STAMP)
	$(BIN)/python -m l0repro.report --runs experiments --out results

# copy the records and evaluation weights (not checkpoints) of complete runs into results/runs
# and rebuild results/
PUBLISHED := table1 table2 table2s sweeps init wd budget
publish: $(STAMP)
	@for s in $$(grep -l '"status": "complete"' $$(find $(addprefix experiments/,$(PUBLISHED)) -name summary.json 2>/dev/null)); do \
		d=$$(dirname $$s); t=results/runs/$${d#experiments/}; mkdir -p $$t; \
		cp $$d/summary.json $$d/metrics.csv $$d/config.yaml $$t/; \
		if [ -f $$d/weights.pt ]; then cp $$d/weights.pt $$t/; fi; echo "published $$t"; done
	$(BIN)/python -m l0repro.report --runs results/runs --out results

# compact every published run (compact.pt beside its weights, the CLI's check of equal test
# error), measure the speedups (speedup.json), and rebuild results/ with them
compact: $(STAMP)
	@set -e; for w in $$(find results/runs -name weights.pt | sort); do \
		$(BIN)/python -m l0repro.compact_run $$(dirname $$w) --data-root $(DATA); done
	$(BIN)/python -m l0repro.bench compact --runs results/runs --synthetic
	$(BIN)/python -m l0repro.report --runs results/runs --out results

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
