#!/usr/bin/env bash
# scripts/bench.sh - cryptvol against its peers, in one interleaved run.
#
# Servers (all on 127.0.0.1 TCP, each on a 1 GiB export filled with random
# data before measuring):
#   cryptvol       target/release/cryptvol serve (AES-256-XTS, 4096-byte sectors)
#   nbdkit-file    nbdkit file plugin, plain file (no encryption)
#   nbdkit-luks    nbdkit file plugin + luks filter (LUKSv1 made by qemu-img,
#                  aes-xts-plain64, 512-byte sectors)
#   qemu-nbd-raw   qemu-nbd, raw file (optional)
#   qemu-nbd-luks  qemu-nbd, LUKS image (optional)
# Workloads (fio nbd engine, one job, time-based): 4k randread QD16,
# 4k randwrite QD16, 1M sequential read QD8, 1M sequential write QD8.
# For each round, for each workload, every server runs back to back (order
# rotated per round), so machine noise is shared; each cell reports the
# median (or best) over rounds. Then the sector cipher alone:
# cryptvol-xts-speed vs `openssl speed -evp aes-256-xts`, interleaved.
# Then the workflows, on a fully written 1 GiB volume, interleaved with
# their peers: snapshot create and restore against a disk copy of the
# volume file (`cp` + `sync`), a re-encrypting `volume copy` against
# `qemu-img convert` from one LUKS image to another with a new key, and an
# incremental snapshot after 16 MiB changed.
#
# The Markdown report goes to stdout; progress and logs go to stderr.
#
# Environment:
#   BENCH_SECONDS=5        seconds per fio cell
#   BENCH_ROUNDS=2         interleaved rounds
#   BENCH_STAT=median      median | best (per cell, over rounds)
#   BENCH_SERVERS="cryptvol nbdkit-file nbdkit-luks"
#                          add qemu-nbd-raw and/or qemu-nbd-luks to include them
#   BENCH_RAMP=0           fio ramp_time (seconds, not counted) per cell
#   BENCH_CRYPTO=1         0 skips the crypto comparison
#   BENCH_CRYPTO_SECONDS=2 seconds per crypto measurement
#   BENCH_CRYPTO_ROUNDS=2  interleaved crypto rounds
#   BENCH_FIO=1            0 skips the NBD (fio) part
#   BENCH_WORKFLOWS=1      0 skips the snapshot / re-encrypt part
#   BENCH_WF_ROUNDS=3      interleaved workflow rounds (disk-bound, so noisier)
#   BENCH_LIVE_SECONDS=8   fio 4k randwrite run, once alone and once while
#                          snapshots of the served volume are taken back to back
#   BENCH_BUILD=1          0 skips `cargo build --release` (use existing binaries)
#   BENCH_STRICT=0         1 exits 1 when a target is missed
#   TMPDIR                 where the temporary images go (needs ~1 GiB per server)
#
# Example: BENCH_SECONDS=2 BENCH_ROUNDS=1 scripts/bench.sh > bench.md

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB="$ROOT/scripts/bench-lib/benchlib.py"
CRYPTVOL="$ROOT/target/release/cryptvol"
XTS_SPEED="$ROOT/target/release/cryptvol-xts-speed"

RUNTIME=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-2}
STAT=${BENCH_STAT:-median}
RAMP=${BENCH_RAMP:-0}
DO_CRYPTO=${BENCH_CRYPTO:-1}
CRYPTO_SECONDS=${BENCH_CRYPTO_SECONDS:-2}
CRYPTO_ROUNDS=${BENCH_CRYPTO_ROUNDS:-2}
DO_BUILD=${BENCH_BUILD:-1}
DO_FIO=${BENCH_FIO:-1}
DO_WF=${BENCH_WORKFLOWS:-1}
WF_ROUNDS=${BENCH_WF_ROUNDS:-3}
LIVE_SECONDS=${BENCH_LIVE_SECONDS:-8}
STRICT=${BENCH_STRICT:-0}
read -r -a SERVERS <<<"${BENCH_SERVERS:-cryptvol nbdkit-file nbdkit-luks}"
[[ $DO_FIO == 1 ]] || SERVERS=()

SIZE=1G
SIZE_BYTES=$((1 << 30))
VOLUME=bench

# Workloads: id, fio rw, block size, queue depth (titles live in benchlib.py).
WL_IDS=(randread4k randwrite4k read1m write1m)
WL_RW=(randread randwrite read write)
WL_BS=(4k 4k 1M 1M)
WL_QD=(16 16 8 8)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- arguments and tools ------------------------------------------------------

for var in RUNTIME ROUNDS RAMP CRYPTO_SECONDS CRYPTO_ROUNDS WF_ROUNDS LIVE_SECONDS; do
    [[ ${!var} =~ ^[0-9]+$ ]] || die "$var must be a whole number, got '${!var}'"
done
((RUNTIME > 0 && ROUNDS > 0 && CRYPTO_SECONDS > 0 && CRYPTO_ROUNDS > 0 && WF_ROUNDS > 0)) ||
    die "BENCH_SECONDS, BENCH_ROUNDS and the crypto settings must be at least 1"
[[ $STAT == median || $STAT == best ]] || die "BENCH_STAT must be median or best, got '$STAT'"
((${#SERVERS[@]} > 0)) || [[ $DO_FIO != 1 ]] || die "BENCH_SERVERS is empty"
for s in "${SERVERS[@]}"; do
    case $s in
        cryptvol | nbdkit-file | nbdkit-luks | qemu-nbd-raw | qemu-nbd-luks) ;;
        *) die "unknown server '$s' in BENCH_SERVERS (known: cryptvol nbdkit-file nbdkit-luks qemu-nbd-raw qemu-nbd-luks)" ;;
    esac
done
want() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }

missing=()
need() { # need TOOL DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing+=("$1 (Debian package: $2)")
}
need python3 python3
need fio fio
need nbdinfo libnbd-bin
need timeout coreutils
if want nbdkit-file || want nbdkit-luks; then need nbdkit nbdkit; fi
if want nbdkit-luks || want qemu-nbd-luks; then need qemu-img qemu-utils; fi
if want qemu-nbd-raw || want qemu-nbd-luks; then need qemu-nbd qemu-utils; fi
if [[ $DO_CRYPTO == 1 ]]; then need openssl openssl; fi
if [[ $DO_WF == 1 ]]; then
    need qemu-img qemu-utils
    need qemu-io qemu-utils
    need nbdcopy libnbd-bin
fi
if [[ $DO_BUILD == 1 ]]; then need cargo "rustup or cargo (https://rustup.rs)"; fi
if ((${#missing[@]})); then
    printf 'bench.sh: missing tools; install them first (e.g. apt-get install fio libnbd-bin nbdkit qemu-utils):\n' >&2
    printf '  %s\n' "${missing[@]}" >&2
    exit 1
fi
if ! fio --enghelp=nbd >/dev/null 2>&1; then
    die "this fio has no 'nbd' ioengine (fio --enghelp=nbd fails); install Debian's fio (built with libnbd)"
fi
if want nbdkit-luks; then
    filterdir=$(nbdkit --dump-config | sed -n 's/^filterdir=//p')
    [[ -e "$filterdir/nbdkit-luks-filter.so" ]] ||
        die "nbdkit has no luks filter ($filterdir/nbdkit-luks-filter.so); install Debian's nbdkit >= 1.32"
fi

# --- temp dir and cleanup -----------------------------------------------------

BUILD_SECONDS=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cryptvol-bench.XXXXXX")
PIDS=()

alive() { # alive PID: running and not a zombie
    [[ -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

stop_pid() { # stop_pid PID: SIGTERM, then SIGKILL after 5 s
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        log "pid $pid ignored SIGTERM for 5 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

CHILD="" # the long-running command in progress, for cleanup

# run_child CMD...: runs CMD in the background and waits for it, so that
# SIGINT/SIGTERM reach the trap at once instead of after CMD ends.
run_child() {
    local rc=0
    "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    [[ -n ${CHILD:-} ]] && stop_pid "$CHILD"
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    rm -rf -- "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

avail_kib=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
need_kib=$(((${#SERVERS[@]} + 1) * 1024 * 1024))
[[ $DO_WF == 1 ]] && need_kib=$((need_kib + 6 * 1024 * 1024))
((avail_kib >= need_kib)) ||
    die "$WORK has $((avail_kib / 1024)) MiB free; this run needs about $((need_kib / 1024)) MiB (set TMPDIR elsewhere)"

# --- build --------------------------------------------------------------------

if want cryptvol || [[ $DO_CRYPTO == 1 || $DO_WF == 1 ]]; then
    if [[ $DO_BUILD == 1 ]]; then
        log "building: cargo build --release"
        build_start=$SECONDS
        run_child cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2 ||
            die "cargo build --release failed (the tree may be mid-change); retry later, or BENCH_BUILD=0 to use the binaries already in target/release"
        BUILD_SECONDS=$((SECONDS - build_start))
    fi
    if want cryptvol || [[ $DO_WF == 1 ]]; then
        [[ -x $CRYPTVOL ]] || die "$CRYPTVOL is missing; run cargo build --release"
    fi
    if [[ $DO_CRYPTO == 1 ]]; then
        [[ -x $XTS_SPEED ]] || die "$XTS_SPEED is missing; run cargo build --release"
    fi
fi

# --- machine ------------------------------------------------------------------

META="$WORK/meta"
FIO_RESULTS="$WORK/fio.tsv"
CRYPTO_RESULTS="$WORK/crypto.tsv"
WF_RESULTS="$WORK/workflows.tsv"
: >"$FIO_RESULTS"
: >"$CRYPTO_RESULTS"
: >"$WF_RESULTS"

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | sed -n 1p)
if command -v lscpu >/dev/null 2>&1; then
    lscpu_model=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | sed -n 1p)
    if ((${#lscpu_model} > ${#cpu})); then cpu=$lscpu_model; fi
fi
rev=unknown
if git -C "$ROOT" rev-parse --short HEAD >/dev/null 2>&1; then
    rev="git $(git -C "$ROOT" rev-parse --short HEAD)"
    if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
        rev+=" + uncommitted changes"
    fi
fi
tools="$(fio --version)"
command -v nbdkit >/dev/null 2>&1 && tools+=", $(nbdkit --version | sed -n 1p)"
command -v qemu-img >/dev/null 2>&1 && tools+=", qemu $(qemu-img --version | sed -n '1s/^qemu-img version \([^ ]*\).*/\1/p')"
command -v openssl >/dev/null 2>&1 && tools+=", $(openssl version | awk '{ print $1, $2 }')"
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "cpu=${cpu:-unknown}"
    echo "nproc=$(nproc)"
    echo "mem=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel=$(uname -r)"
    echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "rev=$rev"
    echo "tools=$tools"
    echo "seconds=$RUNTIME"
    echo "rounds=$ROUNDS"
    echo "stat=$STAT"
    echo "servers=${SERVERS[*]}"
    echo "crypto_seconds=$CRYPTO_SECONDS"
    echo "crypto_rounds=$CRYPTO_ROUNDS"
    echo "wf_rounds=$WF_ROUNDS"
} >"$META"
log "machine: ${cpu:-unknown}, nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg); $(date)"
log "servers: ${SERVERS[*]}; ${RUNTIME} s per cell, $ROUNDS round(s); work dir $WORK"

# --- crypto: cryptvol-xts-speed vs openssl speed, interleaved -------------------

engine="?"
run_crypto_cryptvol() { # run_crypto_cryptvol ROUND
    local out="$WORK/xts-speed.$1.txt" parsed enc dec
    if ! run_child "$XTS_SPEED" "$CRYPTO_SECONDS" 4096 >"$out" 2>&1; then
        log "cryptvol-xts-speed failed:"; tail -n 5 "$out" >&2
        printf '%s\tcv-enc\tnan\n%s\tcv-dec\tnan\n' "$1" "$1" >>"$CRYPTO_RESULTS"
        return 0
    fi
    if ! parsed=$(python3 "$LIB" xts-speed "$out"); then
        printf '%s\tcv-enc\tnan\n%s\tcv-dec\tnan\n' "$1" "$1" >>"$CRYPTO_RESULTS"
        return 0
    fi
    read -r enc dec engine <<<"$parsed"
    printf '%s\tcv-enc\t%s\n%s\tcv-dec\t%s\n' "$1" "$enc" "$1" "$dec" >>"$CRYPTO_RESULTS"
    log "crypto round $1: cryptvol-xts-speed [$engine] encrypt $(awk -v v="$enc" 'BEGIN { printf "%.2f", v / 1e9 }') GB/s"
}
run_crypto_openssl() { # run_crypto_openssl ROUND enc|dec
    local out="$WORK/openssl.$1.$2.txt" v args=()
    [[ $2 == dec ]] && args=(-decrypt)
    if run_child openssl speed -evp aes-256-xts "${args[@]}" -bytes 4096 -seconds "$CRYPTO_SECONDS" >"$out" 2>/dev/null &&
        v=$(python3 "$LIB" openssl "$out"); then
        printf '%s\tossl-%s\t%s\n' "$1" "$2" "$v" >>"$CRYPTO_RESULTS"
        log "crypto round $1: openssl $2 $(awk -v v="$v" 'BEGIN { printf "%.2f", v / 1e9 }') GB/s"
    else
        log "openssl speed ($2) failed"
        printf '%s\tossl-%s\tnan\n' "$1" "$2" >>"$CRYPTO_RESULTS"
    fi
}
if [[ $DO_CRYPTO == 1 ]]; then
    for ((r = 1; r <= CRYPTO_ROUNDS; r++)); do
        if ((r % 2)); then
            run_crypto_cryptvol "$r"
            run_crypto_openssl "$r" enc
            run_crypto_openssl "$r" dec
        else
            run_crypto_openssl "$r" enc
            run_crypto_openssl "$r" dec
            run_crypto_cryptvol "$r"
        fi
    done
fi
echo "engine=$engine" >>"$META"

# --- servers ------------------------------------------------------------------

declare -A URI=() PID=()
USED_PORTS=()

PASSFILE="$WORK/passphrase"
(umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16), end="")' >"$PASSFILE")

make_luks() { # make_luks PATH
    # iter-time=10 ms: nbdkit's luks filter runs the keyslot PBKDF2 on every
    # connection; the default 2 s would only add wall time. The data path
    # (aes-xts-plain64, 512-byte sectors) is the same.
    qemu-img create -q -f luks --object "secret,id=sec0,file=$PASSFILE" \
        -o key-secret=sec0,iter-time=10 "$1" "$SIZE" >&2
}

wait_port() { # wait_port PID PORT SECONDS: until PORT accepts connections
    local pid=$1 port=$2 deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        alive "$pid" || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

start_server() { # start_server NAME PORT: sets URI[NAME], PID[NAME]; 1 on failure
    local name=$1 port=$2 out="$WORK/$1.out" err="$WORK/$1.err" pid uri=""
    local img="$WORK/$name.img" deadline
    case $name in
        cryptvol)
            rm -rf "$WORK/cryptvol-data"
            env -u CRYPTVOL_ROOT_KEY_FILE -u CRYPTVOL_DATA_DIR \
                "$CRYPTVOL" --data-dir "$WORK/cryptvol-data" serve "$VOLUME" --create \
                --size "$SIZE" --listen "127.0.0.1:$port" >"$out" 2>"$err" &
            pid=$!
            PIDS+=("$pid")
            LAST_PID=$pid
            deadline=$((SECONDS + 60))
            while ((SECONDS < deadline)) && alive "$pid" && ! grep -q '^serving ' "$out"; do
                sleep 0.1
            done
            grep -q '^serving ' "$out" || return 1
            uri=$(grep -m1 -o 'nbd://[^ ;,]*' "$out" || true)
            uri=${uri%%$'\n'*}
            [[ -n $uri ]] || uri="nbd://127.0.0.1:$port/$VOLUME"
            ;;
        nbdkit-file)
            [[ -e $img ]] || truncate -s "$SIZE" "$img"
            nbdkit -f --exit-with-parent -i 127.0.0.1 -p "$port" file "file=$img" >"$out" 2>"$err" &
            pid=$!
            PIDS+=("$pid")
            LAST_PID=$pid
            uri="nbd://127.0.0.1:$port/"
            ;;
        nbdkit-luks)
            [[ -e $img ]] || make_luks "$img"
            nbdkit -f --exit-with-parent -i 127.0.0.1 -p "$port" --filter=luks \
                file "file=$img" "passphrase=+$PASSFILE" >"$out" 2>"$err" &
            pid=$!
            PIDS+=("$pid")
            LAST_PID=$pid
            uri="nbd://127.0.0.1:$port/"
            ;;
        qemu-nbd-raw)
            [[ -e $img ]] || truncate -s "$SIZE" "$img"
            qemu-nbd -t -e 0 -b 127.0.0.1 -p "$port" -x "$VOLUME" -f raw "$img" >"$out" 2>"$err" &
            pid=$!
            PIDS+=("$pid")
            LAST_PID=$pid
            uri="nbd://127.0.0.1:$port/$VOLUME"
            ;;
        qemu-nbd-luks)
            [[ -e $img ]] || make_luks "$img"
            qemu-nbd -t -e 0 -b 127.0.0.1 -p "$port" -x "$VOLUME" \
                --object "secret,id=sec0,file=$PASSFILE" \
                --image-opts "driver=luks,key-secret=sec0,file.driver=file,file.filename=$img" \
                >"$out" 2>"$err" &
            pid=$!
            PIDS+=("$pid")
            LAST_PID=$pid
            uri="nbd://127.0.0.1:$port/$VOLUME"
            ;;
    esac
    wait_port "$pid" "$port" 30 || return 1
    URI[$name]=$uri
    PID[$name]=$pid
}

for name in "${SERVERS[@]}"; do
    started=0
    for attempt in 1 2 3; do
        port=$(python3 "$LIB" free-port "${USED_PORTS[@]}")
        LAST_PID=""
        USED_PORTS+=("$port")
        if start_server "$name" "$port"; then
            started=1
            break
        fi
        log "$name did not start on port $port (attempt $attempt); its output:"
        tail -n 20 "$WORK/$name.out" "$WORK/$name.err" >&2 || true
        [[ -n $LAST_PID ]] && stop_pid "$LAST_PID"
    done
    ((started)) || die "$name failed to start"
    size=$(nbdinfo --size "${URI[$name]}" 2>"$WORK/$name.nbdinfo.err") ||
        die "nbdinfo --size ${URI[$name]} failed for $name: $(tail -n 3 "$WORK/$name.nbdinfo.err")"
    [[ $size == "$SIZE_BYTES" ]] || log "warning: $name exports $size bytes, not $SIZE_BYTES"
    log "started $name (pid ${PID[$name]}) at ${URI[$name]}"
done

# --- fio ----------------------------------------------------------------------

RES=""
run_fio() { # run_fio NAME JSON FIO-ARGS...: sets RES="iops bw_bytes io_bytes"; 1 on failure
    local name=$1 json=$2 rc=0
    shift 2
    run_child timeout -k 10 $((RUNTIME + RAMP + 120)) \
        fio --name="$name" --ioengine=nbd --uri="${URI[$name]}" --numjobs=1 \
        --output-format=json --output="$json" "$@" >"$json.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        log "fio failed against $name ($*), exit $rc:"
        tail -n 10 "$json.log" >&2 || true
        [[ -s $json ]] && tail -n 5 "$json" >&2
        if ! alive "${PID[$name]}"; then
            log "$name (pid ${PID[$name]}) has exited; its stderr:"
            tail -n 20 "$WORK/$name.err" >&2
        fi
        return 1
    fi
    RES=$(python3 "$LIB" fio "$json")
}

for name in "${SERVERS[@]}"; do
    log "filling $name with 1 GiB of random data"
    start=$SECONDS
    run_fio "$name" "$WORK/fill.$name.json" --rw=write --bs=1M --iodepth=8 \
        --refill_buffers --end_fsync=1 || die "filling $name failed"
    read -r _ _ bytes <<<"$RES"
    ((bytes >= SIZE_BYTES)) || die "filling $name wrote only $bytes bytes"
    log "filled $name in $((SECONDS - start)) s"
done

nserv=${#SERVERS[@]}
cells=$((ROUNDS * ${#WL_IDS[@]} * nserv))
cell=0
for ((r = 0; r < ROUNDS; r++)); do
    for w in "${!WL_IDS[@]}"; do
        for ((k = 0; k < nserv; k++)); do
            name=${SERVERS[$(((k + r) % nserv))]}
            cell=$((cell + 1))
            json="$WORK/fio.$r.${WL_IDS[$w]}.$name.json"
            args=(--rw="${WL_RW[$w]}" --bs="${WL_BS[$w]}" --iodepth="${WL_QD[$w]}"
                --time_based --runtime="$RUNTIME")
            ((RAMP > 0)) && args+=(--ramp_time="$RAMP")
            if run_fio "$name" "$json" "${args[@]}"; then
                read -r iops bw _ <<<"$RES"
                show=$(awk -v i="$iops" -v b="$bw" -v bs="${WL_BS[$w]}" \
                    'BEGIN { if (bs == "4k") printf "%.1fk IOPS", i / 1000; else printf "%.2f GB/s", b / 1e9 }')
            else
                iops=nan bw=nan show=error
            fi
            printf '%s\t%s\t%s\t%s\t%s\n' "$r" "${WL_IDS[$w]}" "$name" "$iops" "$bw" >>"$FIO_RESULTS"
            log "[$cell/$cells] round $((r + 1)) ${WL_BS[$w]} ${WL_RW[$w]} QD${WL_QD[$w]} $name: $show"
        done
    done
done

# --- workflows: snapshot and re-encrypt, each against its peer -------------------

# Rows of $WF_RESULTS: round \t what \t seconds [\t bytes]
#   disk-copy     cp --sparse=never of the volume file + sync (the disk-copy baseline)
#   snap-create   cryptvol snapshot create, full (first snapshot of the volume)
#   snap-restore  cryptvol volume create --from-snapshot (same key)
#   reenc         cryptvol volume copy --kms-key-id (decrypt + encrypt under a new data key)
#   qemu-reenc    qemu-img convert LUKS -> LUKS with a new key (the peer for reenc)
#   snap-incr     snapshot after 16 MiB changed (bytes added in the 4th column)
# Every measurement ends with `sync -f` on its output, so each pays for its
# own writeback.
WF=$WORK/wf
cv() { env -u CRYPTVOL_ROOT_KEY_FILE -u CRYPTVOL_DATA_DIR "$CRYPTVOL" --data-dir "$WF/data" "$@"; }
wf_time() { # wf_time ROUND WHAT CMD...: runs CMD, appends its wall seconds
    local round=$1 what=$2 t0 t1 rc=0
    shift 2
    t0=$(date +%s.%N)
    run_child "$@" >"$WF/$what.$round.out" 2>"$WF/$what.$round.err" || rc=$?
    t1=$(date +%s.%N)
    if ((rc != 0)); then
        log "workflow $what failed (exit $rc):"
        tail -n 5 "$WF/$what.$round.err" >&2
        printf '%s\t%s\tnan\n' "$round" "$what" >>"$WF_RESULTS"
        return 1
    fi
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    printf '%s\t%s\t%s\n' "$round" "$what" "$secs" >>"$WF_RESULTS"
    log "workflow round $round: $what ${secs} s"
}
json_field() { # json_field FILE KEY: a top-level field of a JSON document
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
wf_serve() { # wf_serve VOLUME: serves VOLUME on a free port; sets WF_PID, WF_URI
    local port out="$WF/serve.out" deadline
    port=$(python3 "$LIB" free-port "${USED_PORTS[@]}")
    USED_PORTS+=("$port")
    : >"$out"
    # Not through cv(): a backgrounded function is a subshell, and $! would be
    # its pid rather than the server's.
    env -u CRYPTVOL_ROOT_KEY_FILE -u CRYPTVOL_DATA_DIR "$CRYPTVOL" --data-dir "$WF/data" \
        serve "$1" --listen "127.0.0.1:$port" >"$out" 2>"$WF/serve.err" &
    WF_PID=$!
    PIDS+=("$WF_PID")
    deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)) && alive "$WF_PID" && ! grep -q '^serving ' "$out"; do
        sleep 0.1
    done
    grep -q '^serving ' "$out" || die "cryptvol serve $1 did not start: $(tail -n 5 "$WF/serve.err")"
    WF_URI="nbd://127.0.0.1:$port/$1"
}
sync_copy() { cp --sparse=never "$1" "$2" && sync -f "$2"; }
cv_sync() { cv "$@" && sync -f "$WF/data"; }
qemu_reencrypt() { # qemu_reencrypt SRC DST: LUKS -> LUKS under a new key
    qemu-img convert --object "secret,id=s0,file=$PASSFILE" --object "secret,id=s1,file=$PASSFILE2" \
        --image-opts "driver=luks,key-secret=s0,file.filename=$1" \
        -O luks -o key-secret=s1,iter-time=10 "$2" && sync -f "$2"
}

if [[ $DO_WF == 1 ]]; then
    mkdir -p "$WF"
    PASSFILE2="$WORK/passphrase2"
    (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16), end="")' >"$PASSFILE2")
    log "workflows: preparing a fully written 1 GiB volume and LUKS image"
    head -c "$SIZE_BYTES" /dev/urandom >"$WF/src.raw"
    cv volume create src --size "$SIZE" >/dev/null
    cv kms create-key --description "bench re-encrypt target" --output json >"$WF/key.json"
    cv kms create-alias --alias-name alias/bench-b \
        --target-key-id "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["KeyMetadata"]["KeyId"])' "$WF/key.json")" >&2
    wf_serve src
    run_child nbdcopy "$WF/src.raw" "$WF_URI" || die "nbdcopy into the workflow volume failed"
    stop_pid "$WF_PID"
    VOLFILE=$(cv --output json volume describe src | python3 -c 'import json, sys; print(json.load(sys.stdin)["path"])')
    [[ -f $VOLFILE ]] || die "cannot find the workflow volume's file ($VOLFILE)"
    qemu-img convert -f raw -O luks --object "secret,id=s0,file=$PASSFILE" \
        -o key-secret=s0,iter-time=10 "$WF/src.raw" "$WF/src.luks"
    rm -f "$WF/src.raw"
    sync -f "$WF"

    for ((r = 1; r <= WF_ROUNDS; r++)); do
        # Snapshot pair: disk copy, create, restore (order rotated per round).
        if ((r % 2)); then
            wf_time "$r" disk-copy sync_copy "$VOLFILE" "$WF/copy.bin" || true
            rm -f "$WF/copy.bin"
        fi
        if wf_time "$r" snap-create cv_sync --output json snapshot create src; then
            snap=$(json_field "$WF/snap-create.$r.out" snapshot_id)
            wf_time "$r" snap-restore cv_sync volume create restored --from-snapshot "$snap" || true
            cv volume delete restored >/dev/null 2>&1 || true
            cv snapshot delete "$snap" >/dev/null
        fi
        if ! ((r % 2)); then
            wf_time "$r" disk-copy sync_copy "$VOLFILE" "$WF/copy.bin" || true
            rm -f "$WF/copy.bin"
        fi
        # Re-encrypt pair.
        if ((r % 2)); then
            wf_time "$r" qemu-reenc qemu_reencrypt "$WF/src.luks" "$WF/dst.luks" || true
            rm -f "$WF/dst.luks"
        fi
        wf_time "$r" reenc cv_sync volume copy src copy --kms-key-id alias/bench-b || true
        cv volume delete copy >/dev/null 2>&1 || true
        if ! ((r % 2)); then
            wf_time "$r" qemu-reenc qemu_reencrypt "$WF/src.luks" "$WF/dst.luks" || true
            rm -f "$WF/dst.luks"
        fi
    done

    # Incremental: a base snapshot, 16 MiB rewritten through NBD, a second one.
    cv snapshot create src >/dev/null
    wf_serve src
    run_child qemu-io -f raw -c "write -P 0x5a 256M 16M" "$WF_URI" >/dev/null ||
        die "qemu-io could not write to the workflow volume"
    stop_pid "$WF_PID"
    if wf_time 1 snap-incr cv_sync --output json snapshot create src; then
        added=$(json_field "$WF/snap-incr.1.out" bytes_added)
        sed -i "\$s/\$/\t$added/" "$WF_RESULTS"
        log "incremental snapshot added $added bytes"
    fi

    # Live snapshots while fio writes: how long each paused the writers, and
    # fio's write latency with and without snapshots running.
    wf_serve src
    live_fio() { # live_fio JSON SECONDS
        fio --name=live --ioengine=nbd --uri="$WF_URI" --rw=randwrite --bs=4k --iodepth=16 \
            --numjobs=1 --time_based --runtime="$2" --size="$SIZE" \
            --output-format=json --output="$1" >"$1.log" 2>&1
    }
    run_child live_fio "$WF/live-base.json" "$LIVE_SECONDS" || die "fio against the live volume failed"
    live_fio "$WF/live-snap.json" "$LIVE_SECONDS" &
    live_pid=$!
    PIDS+=("$live_pid")
    n=0
    sleep 1
    while alive "$live_pid"; do
        n=$((n + 1))
        cv --output json snapshot create src --description "live $n" >"$WF/live-snap.$n.out" 2>"$WF/live-snap.$n.err" ||
            log "live snapshot $n failed: $(tail -n 2 "$WF/live-snap.$n.err")"
        sleep 1
    done
    wait "$live_pid" || die "fio against the live volume failed while snapshots ran"
    stop_pid "$WF_PID"
    python3 "$LIB" live "$WF/live-base.json" "$WF/live-snap.json" "$WF"/live-snap.*.out >>"$WF_RESULTS" ||
        log "could not summarize the live snapshots"
    log "live snapshots: $(tail -n 1 "$WF_RESULTS")"
fi

# --- report -------------------------------------------------------------------

elapsed=$SECONDS
report_args=("$META" "$FIO_RESULTS" "$CRYPTO_RESULTS" "$WF_RESULTS")
[[ $STRICT == 1 ]] && report_args+=(--strict)
rc=0
python3 "$LIB" report "${report_args[@]}" || rc=$?
echo
echo "(bench.sh took ${elapsed} s, of which ${BUILD_SECONDS} s building cryptvol)"
exit "$rc"
