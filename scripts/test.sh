#!/usr/bin/env bash
# The project's test command (README "Run the tests", and what CI runs via .ci/run):
# installs what the tests need on a fresh Debian machine, then checks formatting and
# lints, and runs every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-test-tools.sh
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo test --locked --workspace --no-fail-fast
