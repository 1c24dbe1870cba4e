#!/usr/bin/env bash
# Benchmark oai2ollama against a direct connection to the same canned upstream.
#
#   bash bench/run.sh                    # 10 s per wrk run
#   BENCH_DURATION=3 bash bench/run.sh   # quick run
#   PROXY_CMD="/path/to/other-proxy" bash bench/run.sh
#   BENCH_ONLY=ledger bash bench/run.sh  # only the usage ledger's cost
#   BENCH_LEDGER_ROUNDS=0 bash bench/run.sh  # without it (default: 20 pairs x 4 rounds of 2 s)
#
# The upstream is nginx serving files from bench/make_canned.py; each scenario
# has its own path prefix, and the proxy is restarted with that prefix as its
# base URL. The ledger's cost: two proxies side by side, the default (a SQLite
# ledger) and --database-url none, loaded in turn for short rounds
# (BENCH_LEDGER_SECONDS each, default 2); BENCH_LEDGER_PAIRS fresh pairs of
# processes (default 20), BENCH_LEDGER_ROUNDS rounds each (default 4), since
# two processes of the same code differ by a few percent between themselves
# (memory layout, hash seeds). Results go to stdout and
# bench/results.md. Everything listens on 127.0.0.1, the ledger's file is in
# the run's temporary directory, and everything started here is stopped on exit.
set -euo pipefail

usage() { sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
case "${1:-}" in
"") ;;
-h | --help) usage; exit 0 ;;
*) usage >&2; exit 2 ;;  # settings are environment variables; an argument is a mistake
esac

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
DURATION=${BENCH_DURATION:-10}
LEDGER_PAIRS=${BENCH_LEDGER_PAIRS:-20}
LEDGER_ROUNDS=${BENCH_LEDGER_ROUNDS:-4}  # per pair of processes
LEDGER_SECONDS=${BENCH_LEDGER_SECONDS:-2}
ONLY=${BENCH_ONLY:-}
WARMUP=1                 # seconds of discarded load before each row
WRK_TIMEOUT=30s          # per request; a 2,000-chunk stream at 32 conns is slow
START_TIMEOUT=${PROXY_START_TIMEOUT:-30}
DEFAULT_PROXY_CMD="$REPO/.venv/bin/oai2ollama"
PROXY_CMD=${PROXY_CMD:-$DEFAULT_PROXY_CMD}
PY="$REPO/.venv/bin/python"
[[ -x $PY ]] || PY=python3

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 0 ]] || die "BENCH_DURATION must be a positive integer"
[[ $LEDGER_ROUNDS =~ ^[0-9]+$ ]] || die "BENCH_LEDGER_ROUNDS must be a whole number"
[[ $LEDGER_PAIRS =~ ^[0-9]+$ && $LEDGER_PAIRS -gt 0 ]] || die "BENCH_LEDGER_PAIRS must be a positive integer"
[[ $LEDGER_SECONDS =~ ^[0-9]+$ && $LEDGER_SECONDS -gt 0 ]] || die "BENCH_LEDGER_SECONDS must be a positive integer"
[[ -z $ONLY || $ONLY == ledger ]] || die "BENCH_ONLY must be empty or ledger"

install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v curl >/dev/null || missing+=(curl)
    ((${#missing[@]})) || return 0
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    log "installing ${missing[*]} with apt-get"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}
install_tools
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

TMP=$(mktemp -d /tmp/oai2ollama-bench.XXXXXX)
RAW="$TMP/raw"
mkdir -p "$RAW"
NGINX_PID=""
PROXY_PID=""
OTHER_PID=""  # the second proxy of the ledger's side-by-side runs
WRK_PID=""

stop_pid() {  # stop_pid PID: TERM its process group, KILL after 5 s
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
stop_proxy() { [[ -z $PROXY_PID ]] || stop_pid "$PROXY_PID"; PROXY_PID=""; }
stop_other() { [[ -z $OTHER_PID ]] || stop_pid "$OTHER_PID"; OTHER_PID=""; }
cleanup() {
    [[ -z $WRK_PID ]] || { kill "$WRK_PID" 2>/dev/null; wait "$WRK_PID" 2>/dev/null; } || true
    stop_proxy
    stop_other
    [[ -z $NGINX_PID ]] || stop_pid "$NGINX_PID"
    [[ -n ${KEEP_TMP:-} ]] && log "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {  # first port >= $1 that nobody listens on
    local p
    for ((p = $1; p < $1 + 100; p++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    die "no free port near $1"
}

wait_http() {  # wait_http URL PID SECONDS: until URL answers 200, PID alive
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        kill -0 "$2" 2>/dev/null || return 1
        curl -fs --noproxy '*' --max-time 1 -o /dev/null "$1" && return 0
        sleep 0.1
    done
    return 1
}

lua_body() {  # the JSON body a wrk script POSTs (single source of truth)
    sed -n "s/^wrk.body = '\(.*\)'\$/\1/p" "$BENCH_DIR/$1"
}

probe() {  # probe NAME URL [SCRIPT]: one request with curl, body to $RAW/NAME.body
    local args=()
    [[ -z ${3:-} ]] || args=(-H 'Content-Type: application/json' --data-binary "$(lua_body "$3")")
    curl -sS --noproxy '*' --max-time 30 -o "$RAW/$1.body" -w '%{http_code}' "${args[@]}" "$2" || true
}

load() {  # load NAME URL [SCRIPT]: wrk at 1 and 32 connections
    local args=(--latency --timeout "$WRK_TIMEOUT")
    [[ -z ${3:-} ]] || args+=(-s "$BENCH_DIR/$3")
    log ">> $1  ($2)"
    wrk_run /dev/null -t1 -c1 -d"${WARMUP}s" "${args[@]}" "$2"
    wrk_run "$RAW/$1.c1.txt" -t1 -c1 -d"${DURATION}s" "${args[@]}" "$2"
    wrk_run "$RAW/$1.c32.txt" -t2 -c32 -d"${DURATION}s" "${args[@]}" "$2"
}

wrk_run() {  # wrk_run OUT ARGS...: in the background, so a signal's trap runs at once
    wrk "${@:2}" >"$1" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || true
    WRK_PID=""
}

# ---------------------------------------------------------------- upstream
"$PY" "$BENCH_DIR/make_canned.py" "$TMP/www"
NGINX_PORT=$(free_port 18080)
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<CONF
$( ((EUID == 0)) && echo "user root;")
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log error;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    sendfile on;
    keepalive_requests 1000000;
    types {}
    default_type application/json;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $TMP/www;
        # The static module answers POST with 405; serve the file instead
        # (error_page redirects internally as a GET, =200 sets the status).
        error_page 405 =200 \$uri;
        location ~ ^/sse[0-9]+/v1/chat/completions\$ { default_type text/event-stream; }
    }
}
CONF
setsid "$NGINX" -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
NGINX_PID=$!
UP="http://127.0.0.1:$NGINX_PORT"
wait_http "$UP/json/v1/models" "$NGINX_PID" 10 || die "nginx did not start: $(cat "$TMP/nginx/error.log")"
log "canned upstream: nginx on $UP"

SCENARIOS=(json sse10 sse100 sse2000)
for s in "${SCENARIOS[@]}"; do  # the upstream must return each file verbatim
    for path in v1/models v1/chat/completions; do
        status=$(probe "check" "$UP/$s/$path" chat.lua)
        [[ $status == 200 ]] && cmp -s "$RAW/check.body" "$TMP/www/$s/$path" ||
            die "nginx POST $s/$path: status $status or body differs"
    done
done

# ---------------------------------------------------------------- workers rows
# --workers 1 against --workers 2, both running side by side and loaded in turn (A B B A …), so that
# a drift in the machine's load favours neither; medians to bench/results-workers.md. wrk, the
# canned upstream and the proxy share the machine's cores. BENCH_WORKERS_ROUNDS=0 skips them;
# BENCH_WORKERS_ONLY=1 runs only them; BENCH_WORKERS_ARGS adds proxy flags (e.g. --database-url none).
WORKERS_ROUNDS=${BENCH_WORKERS_ROUNDS:-3}
[[ $WORKERS_ROUNDS =~ ^[0-9]+$ ]] || die "BENCH_WORKERS_ROUNDS must be a whole number"
WORKERS_PIDS=()
start_workers() {  # start_workers SCENARIO N: a proxy with N workers; its URL in WX, its pid in WORKERS_PIDS
    local port cmd
    read -r -a cmd <<<"$PROXY_CMD"
    port=$(free_port $((18500 + 20 * $2)))
    WX="http://127.0.0.1:$port"
    read -r -a extra <<<"${BENCH_WORKERS_ARGS:-}"
    cmd+=(--base-url "$UP/$1/v1" --api-key bench-key --host 127.0.0.1 --port "$port" --log-level warning
        --workers "$2" "${extra[@]}")
    env -u http_proxy -u https_proxy -u all_proxy -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY \
        NO_PROXY=127.0.0.1,localhost XDG_DATA_HOME="$TMP/data-$port" \
        setsid "${cmd[@]}" >"$TMP/workers-$1-$2.log" 2>&1 &
    WORKERS_PIDS+=($!)
    wait_http "$WX/api/version" "$!" "$START_TIMEOUT" || die "proxy with $2 workers did not start: $(tail -n 20 "$TMP/workers-$1-$2.log")"
}
stop_workers() {
    local pid
    for pid in "${WORKERS_PIDS[@]}"; do stop_pid "$pid"; done
    WORKERS_PIDS=()
}
trap 'stop_workers; cleanup' EXIT
group_ticks() {  # group_ticks PID: CPU clock ticks (user + system) of PID's process group
    local p total=0 fields
    for p in $(pgrep -g "$1"); do
        read -r -a fields < <(cut -d')' -f2 "/proc/$p/stat" 2>/dev/null) || continue
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}
workers_pair() {  # workers_pair ROW SCENARIO PATH SCRIPT
    local row=$1 path=$3 script=$4 round n one two first second pid ticks
    start_workers "$2" 1
    one=$WX
    start_workers "$2" 2
    two=$WX
    wrk_run /dev/null -t2 -c32 -d"${WARMUP}s" -s "$BENCH_DIR/$script" "$one$path"
    wrk_run /dev/null -t2 -c32 -d"${WARMUP}s" -s "$BENCH_DIR/$script" "$two$path"
    for ((round = 1; round <= WORKERS_ROUNDS; round++)); do
        first=1 second=2
        ((round % 2)) || first=2 second=1
        for n in $first $second; do
            url=$one
            ((n == 1)) || url=$two
            log ">> workers $n, $row, round $round"
            pid=${WORKERS_PIDS[n - 1]}
            ticks=$(group_ticks "$pid")
            wrk_run "$RAW/workers-$n-$row.$round.c32.txt" -t2 -c32 -d"${DURATION}s" --timeout "$WRK_TIMEOUT" \
                -s "$BENCH_DIR/$script" "$url$path"
            echo "$(($(group_ticks "$pid") - ticks)) $(getconf CLK_TCK)" >"$RAW/workers-$n-$row.$round.cpu"
        done
    done
    stop_workers
}
if [[ -z $ONLY ]] && ((WORKERS_ROUNDS > 0)); then  # BENCH_ONLY=ledger: the ledger's rows alone
    workers_pair v1-json json /v1/chat/completions chat.lua
    workers_pair api-sse10 sse10 /api/chat api_chat.lua
    "$PY" "$BENCH_DIR/workers_report.py" "$RAW" "$BENCH_DIR/results-workers.md" \
        "${BENCH_WORKERS_ONLY:+BENCH_WORKERS_ONLY=1 }BENCH_DURATION=$DURATION BENCH_WORKERS_ROUNDS=$WORKERS_ROUNDS bash bench/run.sh"
fi
[[ -z ${BENCH_WORKERS_ONLY:-} ]] || exit 0

# ---------------------------------------------------------------- direct rows
for s in "${SCENARIOS[@]}"; do
    [[ -z $ONLY ]] || break
    script=chat_stream.lua
    [[ $s == json ]] && script=chat.lua
    load "direct-$s" "$UP/$s/v1/chat/completions" "$script"
done

# ---------------------------------------------------------------- proxy rows
check() {  # check NAME KIND URL [SCRIPT]: sanity-check one proxy answer
    local name=$1 kind=$2 status body="$RAW/$1.body" why=""
    status=$(probe "$name" "$3" "${4:-}")
    if [[ $status != 200 ]]; then
        why="HTTP $status"
    else
        case $kind in
        tags) grep -q '"bench-model"' "$body" || why="bench-model not listed" ;;
        json) grep -q '"chat.completion"' "$body" || why="not a chat.completion" ;;
        sse*) [[ $(grep -c '^data: ' "$body") == $((${kind#sse} + 3)) ]] &&
            [[ $(grep '^data: ' "$body" | tail -n1) == 'data: [DONE]' ]] || why="SSE stream differs" ;;
        ollama) grep -Eq '"done": ?true' "$body" && grep -q 'Sure! Here is' "$body" || why="no done:true answer" ;;
        ndjson*) (($(grep -c . "$body") > ${kind#ndjson})) &&
            tail -n1 "$body" | grep -Eq '"done": ?true' || why="NDJSON stream too short or not done" ;;
        esac
    fi
    echo "${why:-ok}" >"$RAW/$name.check"
    [[ -z $why ]] || log "   $name: bad response: $why"
}

rss() {  # VmRSS and VmHWM in kB, summed over the proxy's process group
    local pid rss=0 hwm=0 k v
    for pid in $(pgrep -g "$PROXY_PID"); do
        while read -r k v _; do
            case $k in VmRSS:) rss=$((rss + v)) ;; VmHWM:) hwm=$((hwm + v)) ;; esac
        done <"/proc/$pid/status" 2>/dev/null || true
    done
    echo "$rss $hwm"
}

row() {  # row NAME KIND PATH [SCRIPT]: check, load, record RSS
    check "proxy-$1" "$2" "$PX$3" "${4:-}"
    load "proxy-$1" "$PX$3" "${4:-}"
    rss >"$RAW/proxy-$1.rss"
}

start_proxy() {  # start_proxy SCENARIO [ARG...]: fails (returns 1) with the reason in proxy.skipped
    local cmd port why
    read -r -a cmd <<<"$PROXY_CMD"
    if ! command -v "${cmd[0]}" >/dev/null; then
        echo "proxy command not found: ${cmd[0]}" >"$RAW/proxy.skipped"
        return 1
    fi
    port=$(free_port 18434)
    PX="http://127.0.0.1:$port"
    cmd+=(--base-url "$UP/$1/v1" --api-key bench-key --host 127.0.0.1 --port "$port" --log-level warning "${@:2}")
    # XDG_DATA_HOME: the default ledger (SQLite in the data directory) in this run's directory.
    env -u http_proxy -u https_proxy -u all_proxy -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY \
        NO_PROXY=127.0.0.1,localhost XDG_DATA_HOME="$TMP/data-$port" \
        setsid "${cmd[@]}" >"$TMP/proxy-$1-$port.log" 2>&1 &
    PROXY_PID=$!
    if ! wait_http "$PX/api/version" "$PROXY_PID" "$START_TIMEOUT"; then
        {
            kill -0 "$PROXY_PID" 2>/dev/null && why="did not answer GET /api/version within ${START_TIMEOUT}s" ||
                why="exited before answering GET /api/version"
            echo "proxy $why (scenario $1): ${cmd[*]}"
            tail -n 20 "$TMP/proxy-$1-$port.log"
        } >"$RAW/proxy.skipped"
        stop_proxy
        return 1
    fi
    log "proxy for scenario $1: $PX (pid $PROXY_PID)"
}

proxy_rows() {
    [[ -z $ONLY ]] || return 0
    start_proxy json || return 1
    row tags tags /api/tags
    row v1-json json /v1/chat/completions chat.lua
    stop_proxy

    start_proxy sse2000 || return 1
    row v1-sse2000 sse2000 /v1/chat/completions chat_stream.lua
    row api-sse2000 ndjson2000 /api/chat api_chat_stream.lua
    stop_proxy

    start_proxy sse10 || return 1
    row api-sse10 ollama /api/chat api_chat.lua
    stop_proxy

    start_proxy sse100 || return 1
    row api-sse100 ndjson100 /api/chat api_chat_stream.lua
    stop_proxy
}

ledger_pair() {  # ledger_pair ROW KIND SCENARIO PATH SCRIPT: the ledger on and off, alternated
    local row=$1 kind=$2 path=$4 script=$5 pair round=0 n side url on off first second
    for ((pair = 1; pair <= LEDGER_PAIRS; pair++)); do
        # Fresh processes for each pair: a process's speed is partly luck (where its memory lies,
        # its hash seed), a few percent either way, and one pair would carry its luck into the row.
        # Which of the two starts first alternates too, so that starting first is no one's luck.
        first=on second=off
        ((pair % 2)) || first=off second=on
        for side in $first $second; do
            if [[ $side == on ]]; then
                start_proxy "$3" || return 1
                on=$PX
            else
                start_proxy "$3" --database-url none || return 1
                off=$PX
            fi
            [[ -n $OTHER_PID ]] || { OTHER_PID=$PROXY_PID PROXY_PID=""; }
        done
        if ((pair == 1)); then
            check "ledger-on-$row" "$kind" "$on$path" "$script"
            check "ledger-off-$row" "$kind" "$off$path" "$script"
        fi
        wrk_run /dev/null -t2 -c32 -d"${WARMUP}s" -s "$BENCH_DIR/$script" "$on$path"
        wrk_run /dev/null -t2 -c32 -d"${WARMUP}s" -s "$BENCH_DIR/$script" "$off$path"
        for ((n = 1; n <= LEDGER_ROUNDS; n++)); do
            # A B, then B A: a drift in the machine's load favours neither side. The report compares
            # each round's two runs with each other (bench/report.py).
            round=$((round + 1))
            first=on second=off
            ((round % 2)) || first=off second=on
            for side in $first $second; do
                url=$on
                [[ $side == on ]] || url=$off
                log ">> ledger $side, $row, pair $pair, round $round"
                wrk_run "$RAW/ledger-$side-$row.$round.c32.txt" -t2 -c32 -d"${LEDGER_SECONDS}s" \
                    --timeout "$WRK_TIMEOUT" -s "$BENCH_DIR/$script" "$url$path"
            done
        done
        stop_proxy
        stop_other
    done
    echo "$LEDGER_PAIRS" >"$RAW/ledger-$row.pairs"
}

ledger_rows() {
    ((LEDGER_ROUNDS > 0)) || return 0
    ledger_pair v1-json json json /v1/chat/completions chat.lua || return 1
    ledger_pair api-sse10 ollama sse10 /api/chat api_chat.lua || return 1
}

status=0
if ! proxy_rows || ! ledger_rows; then
    log "error: $(head -n1 "$RAW/proxy.skipped"); proxy rows not measured"
    sed 1d "$RAW/proxy.skipped" >&2
    status=1
fi

command="BENCH_DURATION=$DURATION bash bench/run.sh"
[[ -z $ONLY ]] || command="BENCH_ONLY=$ONLY $command"
((LEDGER_ROUNDS == 0)) ||
    command="BENCH_LEDGER_SECONDS=$LEDGER_SECONDS BENCH_LEDGER_PAIRS=$LEDGER_PAIRS BENCH_LEDGER_ROUNDS=$LEDGER_ROUNDS $command"
[[ $PROXY_CMD == "$DEFAULT_PROXY_CMD" ]] || command="PROXY_CMD=${PROXY_CMD@Q} $command"
"$PY" "$BENCH_DIR/report.py" "$RAW" "$BENCH_DIR/results.md" "$command"
exit "$status"
