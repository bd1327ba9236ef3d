# Sourced by the benchmark scripts: the repository root as the working directory, the shared
# cargo cache, the Python tools .ci/run installs, and the vigil binary to measure — this
# checkout's release build, or VIGIL_BIN (e.g. an earlier commit's, to compare back to back).
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vigil/target}"
py="${VIGIL_PYTHON:-$HOME/.cache/vigil/venv/bin/python}"
if [ -z "${VIGIL_BIN:-}" ]; then cargo build --release -q -p vigil; fi
vigil="${VIGIL_BIN:-$CARGO_TARGET_DIR/release/vigil}"
