# scalecontrast developer tasks. `make setup` creates .venv in the repo root.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?=

.PHONY: setup test lint bench demo docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check src tests benchmarks

# The documentation site (docs/ + mkdocs.yml) into site/; --strict turns every warning (a broken
# link, a docstring that does not parse) into an error. Builds offline.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: setup
	$(BIN)/python benchmarks/loss.py

# `make demo`: a short fit + test on the built-in synthetic data (a few minutes on 2 CPU cores),
# then pictures: colour masks and overlays (segment) and a per-scale t-SNE of the embeddings (embed).
# `DATA=path/to/camvid make demo` does the same on CamVid (SegNet layout, see `scalecontrast data camvid`).
DEMO_OUT ?= outputs/demo
DEMO_STEPS ?= 150
DEMO_CONTRAST := --config configs/contrast/mscs.yaml --config configs/contrast/cpu_sampling.yaml
ifeq ($(strip $(DATA)),)
DEMO_CFG := --config configs/synthetic/fpn_lite0.yaml $(DEMO_CONTRAST)
DEMO_DATA :=
DEMO_TRAIN :=
DEMO_IMAGES := $(DEMO_OUT)/images/test/images
else
DEMO_CFG := --config configs/camvid/fpn_lite0.yaml $(DEMO_CONTRAST)
DEMO_DATA := --data.root $(DATA)
DEMO_TRAIN := --data.crop_size '[256, 256]' --trainer.val_check_interval $(DEMO_STEPS)
DEMO_IMAGES := $(DATA)/test
endif
DEMO_RUN := $(DEMO_OUT)/run
DEMO_CKPT := $(DEMO_RUN)/checkpoints/last.ckpt
SC := $(BIN)/scalecontrast

demo: setup
	rm -rf $(DEMO_RUN)
	$(SC) fit $(DEMO_CFG) $(DEMO_DATA) $(DEMO_TRAIN) --trainer.max_steps $(DEMO_STEPS) \
		--trainer.default_root_dir $(DEMO_RUN)
	$(SC) test $(DEMO_CFG) $(DEMO_DATA) --ckpt_path $(DEMO_CKPT) \
		--trainer.default_root_dir $(DEMO_RUN) --trainer.enable_progress_bar false
	$(if $(strip $(DATA)),,$(SC) data synthetic --root $(DEMO_OUT)/images --num 6)
	$(SC) segment --ckpt_path $(DEMO_CKPT) --input $(DEMO_IMAGES) --limit 6 --output $(DEMO_OUT)/segment
	$(SC) embed --config $(word 2,$(DEMO_CFG)) $(DEMO_DATA) --ckpt_path $(DEMO_CKPT) --output $(DEMO_OUT)/tsne.png
	@echo "demo: masks and overlays in $(DEMO_OUT)/segment, t-SNE in $(DEMO_OUT)/tsne.png," \
		"TensorBoard logs in $(DEMO_RUN) (tensorboard --logdir $(DEMO_RUN))"

clean:
	rm -rf $(VENV) build site *.egg-info src/*.egg-info
