# deepscope's two commands: `make demo` and `make test`. Both are idempotent.
#
# TORCH_SPEC pins the CPU build of torch, installed before anything else so
# that no dependency pulls a multi-GB CUDA build. Override it for another
# build, e.g. `make demo TORCH_SPEC='torch==2.13.0+cu128'`.

PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
PROTO_VENV := .cache/proto-venv
DEMO_LOGDIR ?= runs/demo
PORT ?= 6006

.PHONY: demo test setup-demo setup-test chromium frontend-deps frontend-check frontend-test \
	lint proto proto-venv clean

# ---------------------------------------------------------------- set-up

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install "$(TORCH_SPEC)"
	touch $@

# TORCH_SPEC is named again in each install so that no extra can move torch.
$(VENV)/.demo: $(VENV)/.torch setup.py
	$(PIP) install -e ".[demo]" "$(TORCH_SPEC)"
	touch $@

$(VENV)/.test: $(VENV)/.demo setup.py
	$(PIP) install -e ".[demo,test,hf,lightning,transformers]" "$(TORCH_SPEC)"
	touch $@

setup-demo: $(VENV)/.demo

setup-test: $(VENV)/.test chromium frontend-deps proto-venv

chromium:
	@command -v chromium >/dev/null || { apt-get update -q && \
		apt-get install -y -q --no-install-recommends chromium; }

frontend/node_modules/.package-lock.json: frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

frontend-deps: frontend/node_modules/.package-lock.json

# protobuf 6.31.1 gencode, which imports under protobuf 6.31 through 7.x.
$(PROTO_VENV)/.ok:
	$(PYTHON) -m venv $(PROTO_VENV)
	$(PROTO_VENV)/bin/python -m pip --disable-pip-version-check -q install \
		grpcio-tools==1.80.0 protobuf==6.31.1
	touch $@

proto-venv: $(PROTO_VENV)/.ok

# ---------------------------------------------------------------- the two commands

demo: setup-demo
	$(PY) examples/train_digits.py --logdir $(DEMO_LOGDIR)
	@echo "deepscope demo: open http://127.0.0.1:$(PORT)/#deepscope (Ctrl-C stops TensorBoard)"
	$(VENV)/bin/tensorboard --logdir $(DEMO_LOGDIR) --host 127.0.0.1 --port $(PORT)

test: setup-test lint frontend-check frontend-test
	$(PY) -m pytest -q -p no:cacheprovider

# ---------------------------------------------------------------- parts of test

lint: $(VENV)/.test
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# Rebuild the bundle; fail when the committed one is stale.
frontend-check: frontend-deps
	cd frontend && npm run --silent typecheck && npm run --silent build
	git diff --exit-code --stat -- deepscope/tb_plugin/static || { \
		echo "the committed frontend bundle is stale: run 'cd frontend && npm run build' and commit it"; \
		exit 1; }

# The tab's pure functions (binary decoding, saliency rendering, ...) under `node --test`.
frontend-test: frontend-deps
	cd frontend && npm test --silent

# Regenerate deepscope/proto/deepscope_pb2.py from deepscope.proto.
proto: proto-venv
	$(PROTO_VENV)/bin/python -m grpc_tools.protoc -I. --python_out=. deepscope/proto/deepscope.proto

clean:
	rm -rf $(VENV) .cache frontend/node_modules
