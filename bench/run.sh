#!/usr/bin/env bash
# Export and restore figures for the mixed dataset, side by side with Redis's
# own tools: `redis-cli --rdb | zstd -T0` for export (and for the snapshot
# exports, `--snapshot` and `--from-rdb` of the same RDB), `redis-cli --pipe`
# of the same data as plain commands for restore. The source server runs
# with `repl-diskless-sync-delay 0`, so neither the reference nor
# `--snapshot` waits the default 5 s for other replicas. Restore is timed
# into an empty server with its pre-restore backup and with `--no-backup`,
# and with `--mode overwrite` (and its backup) over the same keys. Then one big hash and one big
# sorted set, exported and restored on their own. Prints a table; copy it
# into docs/PERFORMANCE.md.
#
#   bench/run.sh [KEYS] [BIG_MEMBERS] [CLUSTER]
#
# Defaults: 1000000 5000000 1. BIG_MEMBERS 0 skips the big keys; CLUSTER 0
# skips the cluster case (the same archive restored into a cluster of three
# primaries, exported from it, restored into a second one; reference: each
# primary's `redis-cli --rdb | zstd` at the same time).
#
# Starts its own two redis-server processes on free ports in a temp dir and
# stops them at the end. Needs redis-server, redis-cli, zstd, age and GNU time.
set -euo pipefail
keys=${1:-1000000}
big=${2:-5000000}
cluster=${3:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
# Servers are stopped and waited for before their directory is removed
# (cluster nodes write their config file as they exit).
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() {
  local port=$1; shift
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
    --logfile "redis-$port.log" --daemonize no "$@" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis-server on $port did not start" >&2; exit 1
}

cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin archive --example load_dataset
bin="$root/target/release/archive"
src=$(free_port); start "$src" --repl-diskless-sync-delay 0
dst=$(free_port); start "$dst"
"$root/target/release/examples/load_dataset" "redis://127.0.0.1:$src" "$keys" 0 >/dev/null
total=$(redis-cli -p "$src" dbsize)

# empty PORT...: flush the servers, then have their allocator give the
# freed memory back and wait a moment, so that the next timed step does
# not share the cores with the server's purge of a million keys (the
# steps after a flush would otherwise pay for it, the others not).
empty() {
  local p
  for p in "$@"; do
    redis-cli -p "$p" flushall >/dev/null
    redis-cli -p "$p" memory purge >/dev/null
  done
  sleep 1
}

# measure NAME CMD...: wall seconds and peak RSS (KiB) of the command.
measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/$name.time" "$@" >/dev/null 2>"$work/$name.err" || {
    cat "$work/$name.err" >&2; exit 1; }
  read -r secs rss <"$work/$name.time"
  printf '%s %s %s\n' "$name" "$secs" "$rss"
}

exp=$(measure export "$bin" export --source "redis://127.0.0.1:$src" -o "$work/bench.tar.zst")
age-keygen -o "$work/key.txt" 2>/dev/null
enc=$(measure export-age "$bin" export --source "redis://127.0.0.1:$src" -o "$work/bench.tar.zst.age" -r "$(age-keygen -y "$work/key.txt")")
rdb=$(measure rdb-zstd sh -c "redis-cli -p $src --rdb - 2>/dev/null | zstd -T0 -q -o '$work/dump.rdb.zst'")
snap=$(measure export-snapshot "$bin" export --snapshot --source "redis://127.0.0.1:$src" -o "$work/snap.tar.zst")
redis-cli -p "$src" --rdb "$work/dump.rdb" >/dev/null 2>&1
frdb=$(measure export-from-rdb "$bin" export --from-rdb "$work/dump.rdb" -o "$work/from-rdb.tar.zst")
rm -f "$work/dump.rdb"
res=$(measure restore "$bin" restore "$work/bench.tar.zst" --target "redis://127.0.0.1:$dst" --yes --backup-dir "$work/backups")
restored=$(redis-cli -p "$dst" dbsize)
# The same archive again, over the keys it just wrote: every key is
# overwritten, and the pre-restore backup holds all of them.
ovr=$(measure restore-overwrite "$bin" restore "$work/bench.tar.zst" --target "redis://127.0.0.1:$dst" --yes --mode overwrite --backup-dir "$work/backups")
rm -rf "$work/backups"
empty "$dst"
nob=$(measure restore-nobackup "$bin" restore "$work/bench.tar.zst" --target "redis://127.0.0.1:$dst" --yes --no-backup)
empty "$dst"
"$root/target/release/examples/load_dataset" --resp "$keys" 0 >"$work/data.resp"
pip=$(measure pipe sh -c "redis-cli -p $dst --pipe <'$work/data.resp'")
piped=$(redis-cli -p "$dst" dbsize)
size=$(stat -c %s "$work/bench.tar.zst")
rdbsize=$(stat -c %s "$work/dump.rdb.zst")

echo "dataset: $keys mixed keys, $(nproc) cores, $(redis-server --version | awk '{print $3}')"
printf '%-26s %9s %12s %12s %12s\n' step seconds keys/s "peak RSS" size
row() { # name secs rss bytes
  local kps; kps=$(awk -v k="$total" -v s="$2" 'BEGIN{ if (s>0) printf "%d", k/s; else print "-" }')
  printf '%-26s %9s %12s %9d MiB %12s\n' "$1" "$2" "$kps" $(( $3 / 1024 )) "$4"
}
read -r _ s r <<<"$exp"; row "archive export" "$s" "$r" "$size"; es=$s
read -r _ s r <<<"$enc"; row "  same, age-encrypted" "$s" "$r" "$(stat -c %s "$work/bench.tar.zst.age")"; as=$s
read -r _ s r <<<"$rdb"; row "redis-cli --rdb | zstd" "$s" "$r" "$rdbsize"; rs=$s
read -r _ s r <<<"$snap"; row "archive export --snapshot" "$s" "$r" "$(stat -c %s "$work/snap.tar.zst")"; ss=$s
read -r _ s r <<<"$frdb"; row "archive export --from-rdb" "$s" "$r" "$(stat -c %s "$work/from-rdb.tar.zst")"; fs=$s
read -r _ s r <<<"$res"; row "archive restore (skip)" "$s" "$r" "-"; ts=$s
read -r _ s r <<<"$nob"; row "  same, --no-backup" "$s" "$r" "-"; ns=$s
read -r _ s r <<<"$ovr"; row "  overwrite, with backup" "$s" "$r" "-"; os=$s
read -r _ s r <<<"$pip"; row "redis-cli --pipe" "$s" "$r" "-"; ps=$s
awk -v a="$es" -v b="$rs" 'BEGIN{ if (b>0) printf "export / rdb reference:        %.2fx\n", a/b }'
awk -v a="$ss" -v b="$rs" 'BEGIN{ if (b>0) printf "snapshot / rdb reference:      %.2fx\n", a/b }'
awk -v a="$fs" -v b="$rs" 'BEGIN{ if (b>0) printf "from-rdb / rdb reference:      %.2fx\n", a/b }'
awk -v a="$as" -v b="$es" 'BEGIN{ if (b>0) printf "age export / plain export:     %.2fx\n", a/b }'
awk -v a="$ts" -v b="$ps" -v ns="$ns" -v os="$os" 'BEGIN{ if (b>0) printf "restore / --pipe reference:    %.2fx (--no-backup: %.2fx; overwrite with backup: %.2fx)\n", a/b, ns/b, os/b }'
[ "$piped" = "$total" ] || { echo "redis-cli --pipe loaded $piped keys, expected $total" >&2; exit 1; }
[ "$restored" = "$total" ] || { echo "restore wrote $restored keys, expected $total" >&2; exit 1; }

if [ "$cluster" -gt 0 ]; then
  # Two clusters of three primaries each (no replicas), on free ports.
  # make_cluster NAME: start three nodes, create the cluster, ports in NAME.
  make_cluster() {
    local -n ports=$1
    local p
    ports=()
    for _ in 1 2 3; do
      p=$(free_port)
      start "$p" --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --cluster-port "$(free_port)" \
        --repl-diskless-sync-delay 0
      ports+=("$p")
    done
    redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
    for p in "${ports[@]}"; do
      for _ in $(seq 200); do
        redis-cli -p "$p" cluster info | grep -q cluster_state:ok && break; sleep 0.05
      done
    done
  }
  csize() { local n=0 p; for p in "$@"; do n=$((n + $(redis-cli -p "$p" dbsize))); done; echo "$n"; }
  make_cluster c1
  make_cluster c2
  sleep 1
  cin=$(measure cluster-load "$bin" restore "$work/bench.tar.zst" --target "redis://127.0.0.1:${c1[0]}" --yes --no-backup)
  cex=$(measure cluster-export "$bin" export --source "redis://127.0.0.1:${c1[0]}" -o "$work/cluster.tar.zst")
  crdb=$(measure cluster-rdb sh -c "for p in ${c1[*]}; do redis-cli -p \$p --rdb - 2>/dev/null | zstd -T0 -q -o '$work/dump-'\$p.rdb.zst & done; wait")
  csn=$(measure cluster-snapshot "$bin" export --snapshot --source "redis://127.0.0.1:${c1[0]}" -o "$work/cluster-snap.tar.zst")
  cre=$(measure cluster-restore "$bin" restore "$work/cluster.tar.zst" --target "redis://127.0.0.1:${c2[0]}" --yes --backup-dir "$work/backups")
  [ "$(csize "${c2[@]}")" = "$total" ] || { echo "cluster restore wrote $(csize "${c2[@]}") keys, expected $total" >&2; exit 1; }
  empty "${c2[@]}"
  cnb=$(measure cluster-restore-nobackup "$bin" restore "$work/cluster.tar.zst" --target "redis://127.0.0.1:${c2[0]}" --yes --no-backup)
  [ "$(csize "${c1[@]}")" = "$total" ] && [ "$(csize "${c2[@]}")" = "$total" ] ||
    { echo "cluster holds the wrong number of keys" >&2; exit 1; }
  echo
  echo "cluster: 3 primaries, the same $keys keys"
  printf '%-26s %9s %12s %12s %12s\n' step seconds keys/s "peak RSS" size
  read -r _ s r <<<"$cin"; row "restore single -> cluster" "$s" "$r" "-"
  read -r _ s r <<<"$cex"; row "archive export" "$s" "$r" "$(stat -c %s "$work/cluster.tar.zst")"; ces=$s
  read -r _ s r <<<"$crdb"; row "--rdb | zstd, per primary" "$s" "$r" "$(cat "$work"/dump-*.rdb.zst | wc -c)"; crs=$s
  read -r _ s r <<<"$csn"; row "archive export --snapshot" "$s" "$r" "$(stat -c %s "$work/cluster-snap.tar.zst")"; css=$s
  read -r _ s r <<<"$cre"; row "archive restore" "$s" "$r" "-"; cres=$s
  read -r _ s r <<<"$cnb"; row "  same, --no-backup" "$s" "$r" "-"; cnbs=$s
  awk -v a="$ces" -v b="$crs" 'BEGIN{ if (b>0) printf "cluster export / rdb reference: %.2fx\n", a/b }'
  awk -v a="$css" -v b="$crs" 'BEGIN{ if (b>0) printf "cluster snapshot / rdb reference: %.2fx\n", a/b }'
  awk -v a="$cres" -v b="$ts" -v c="$cnbs" -v d="$ns" 'BEGIN{ if (b>0 && d>0) printf "cluster restore / single-server restore: %.2fx (--no-backup: %.2fx)\n", a/b, c/d }'
fi

[ "$big" -gt 0 ] || exit 0
# One hash and one sorted set of $big members each (16-byte fields and
# members, short values), loaded with redis-cli --pipe.
redis-cli -p "$src" flushall >/dev/null
redis-cli -p "$dst" flushall >/dev/null
python3 - "$big" <<'PY' | redis-cli -p "$src" --pipe >/dev/null
import sys
n = int(sys.argv[1]); out = sys.stdout.buffer
def cmd(args):
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        out.write(b"$%d\r\n%s\r\n" % (len(a), a))
for start in range(0, n, 1000):
    r = range(start, min(n, start + 1000))
    h = [b"HSET", b"big:hash"]; z = [b"ZADD", b"big:zset"]
    for i in r:
        h += [b"field-%010d" % i, b"v%d" % (i * 7919 % 100000)]
        z += [b"%d" % (i % 1000003), b"member-%09d" % i]
    cmd(h); cmd(z)
PY
bex=$(measure big-export "$bin" export --source "redis://127.0.0.1:$src" -o "$work/big.tar.zst")
bsn=$(measure big-snapshot "$bin" export --snapshot --source "redis://127.0.0.1:$src" -o "$work/big-snap.tar.zst")
bre=$(measure big-restore "$bin" restore "$work/big.tar.zst" --target "redis://127.0.0.1:$dst" --yes --backup-dir "$work/backups")
[ "$(redis-cli -p "$dst" hlen big:hash)" = "$big" ] && [ "$(redis-cli -p "$dst" zcard big:zset)" = "$big" ] ||
  { echo "big keys restored incompletely" >&2; exit 1; }
echo
echo "big keys: a hash and a sorted set of $big members each"
printf '%-26s %9s %12s %12s %12s\n' step seconds members/s "peak RSS" size
brow() {
  local mps; mps=$(awk -v k="$((big * 2))" -v s="$2" 'BEGIN{ if (s>0) printf "%d", k/s; else print "-" }')
  printf '%-26s %9s %12s %9d MiB %12s\n' "$1" "$2" "$mps" $(( $3 / 1024 )) "$4"
}
read -r _ s r <<<"$bex"; brow "archive export" "$s" "$r" "$(stat -c %s "$work/big.tar.zst")"
read -r _ s r <<<"$bsn"; brow "archive export --snapshot" "$s" "$r" "$(stat -c %s "$work/big-snap.tar.zst")"
read -r _ s r <<<"$bre"; brow "archive restore" "$s" "$r" "-"
