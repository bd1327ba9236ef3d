# Sourced by the benchmark scripts: the repository root as the working directory, the shared
# cargo cache, the Python tools .ci/run installs, and the vigil binary to measure — this
# checkout's release build, or VIGIL_BIN (e.g. an earlier commit's, to compare back to back).
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vigil/target}"
py="${VIGIL_PYTHON:-$HOME/.cache/vigil/venv/bin/python}"
if [ -z "${VIGIL_BIN:-}" ]; then cargo build --release -q -p vigil; fi
vigil="${VIGIL_BIN:-$CARGO_TARGET_DIR/release/vigil}"

# Starts a Tansu broker (memory storage, as the tests use) on a random port, logging to
# "$1/tansu.log": sets `tansu`, `broker_pid` and `brokers`, and returns once it listens. Needs
# Tansu (installed by .ci/run into ~/.cache/vigil/tools) or VIGIL_TANSU.
start_tansu() {
  tansu="${VIGIL_TANSU:-$HOME/.cache/vigil/tools/bin/tansu}"
  local port=$((20000 + RANDOM % 20000))
  "$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$1/tansu.log" 2>&1 &
  broker_pid=$!
  brokers="127.0.0.1:$port"
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
}

# CPU seconds (user + sys) a running process has used so far, from /proc (100 ticks a second).
cpu_seconds() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
