#!/usr/bin/env bash
# Three ringpush regions (cn, us, eu) on one machine, each in its own network namespace, with
# real latency between the regions. Runs as root.
#
#   deploy/local/three-regions.sh start | stop | status | cut REGION | heal REGION
#
# start prints one JSON object on stdout (progress goes to stderr):
#   {"regions": [{"name": "cn", "code": 1, "controller": "http://10.77.0.11:8080",
#                 "dispatcher": "http://10.77.0.11:8081", "redis": "redis://10.77.0.11:6379", ...}, ...],
#    "admin_token": "...", "cut": [], ...}
# status prints the same while everything runs (exit 0), else exits 1.
#
# Layout: a bridge ${PREFIX}br0 (10.${OCTET}.0.1/24) in the default namespace, and namespaces
# ${PREFIX}-cn/-us/-eu (10.${OCTET}.0.11/.12/.13), each joined to it by a veth (${PREFIX}-cn-h on
# the host, eth0 inside). Each region runs its own redis-server, controller, dispatcher and one
# connector (id <region>-1) on its address, with <dir>/<region>/ringpush.toml.
#
# Latency: what a region sends to another region is delayed by the sender's figure (cn 50 ms,
# us 30 ms, eu 40 ms; round trips cn-us 80, cn-eu 90, us-eu 70 ms). Traffic between a region and
# the default namespace (the test process, playing the devices) is not delayed. Two ways:
#   netem   - tc inside each namespace: prio qdisc on eth0, netem on band 1, u32 filters on the
#             other regions' addresses. Needs sch_prio, sch_netem and cls_u32.
#   nfqueue - for kernels without netem: iptables in each namespace sends packets arriving from
#             another region (mangle PREROUTING, by source address) to an NFQUEUE queue, and
#             deploy/local/nfqueue-delay.py (python3, stdlib only) holds them for the sender's
#             delay. Same one-way delays, applied on arrival. Plain `ping` reports the kernel
#             receive timestamp, taken before the hold, so it shows only the request half;
#             `ping -U` (user-to-user time), TCP and applications see the whole round trip.
#   RINGPUSH_REGIONS_DELAY=auto (default) uses netem when the kernel accepts it, else nfqueue.
#
# cut REGION drops, inside the namespaces (iptables raw PREROUTING, so only on arrival: senders
# see silence, never an error), every packet between REGION and the other regions, both ways;
# the default namespace still reaches it. Connections in flight stall. heal REGION removes
# exactly those rules. Both need iptables, which this script never installs.
#
# Knobs (environment): RINGPUSH_BIN (default target/debug/ringpush in the repo if present, else
# ringpush on PATH), RINGPUSH_REGIONS_PREFIX (rp), RINGPUSH_REGIONS_OCTET (77),
# RINGPUSH_REGIONS_DIR (/tmp/ringpush-three-regions-$PREFIX: configs, logs, pid files, redis
# data), RINGPUSH_ADMIN_TOKEN (default: random hex, saved in the dir), REDIS_SERVER
# (redis-server), RINGPUSH_REGIONS_DELAY (auto|netem|nfqueue), RINGPUSH_REGIONS_TIMEOUT (30:
# seconds to wait for /healthz), RINGPUSH_REGIONS_KEEP_DATA (set to 1 to keep last run's redis
# data; by default start wipes it). stop keeps the dir (logs); start appends to the logs.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

PREFIX=${RINGPUSH_REGIONS_PREFIX:-rp}
OCTET=${RINGPUSH_REGIONS_OCTET:-77}
DIR=${RINGPUSH_REGIONS_DIR:-/tmp/ringpush-three-regions-$PREFIX}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
DELAY_MODE=${RINGPUSH_REGIONS_DELAY:-auto}
HEALTH_TIMEOUT=${RINGPUSH_REGIONS_TIMEOUT:-30}
KEEP_DATA=${RINGPUSH_REGIONS_KEEP_DATA:-0}

REGIONS=(cn us eu)
declare -A CODE=([cn]=1 [us]=2 [eu]=3)
declare -A HOST_PART=([cn]=11 [us]=12 [eu]=13)
declare -A DELAY_MS=([cn]=50 [us]=30 [eu]=40)
TOKEN_FILE=$DIR/admin-token
MODE_FILE=$DIR/latency-mode

log() { printf 'three-regions: %s\n' "$*" >&2; }
die() { # die [EXIT_CODE] MESSAGE
  local code=1
  if [[ $# -gt 1 ]]; then code=$1; shift; fi
  printf 'three-regions: error: %s\n' "$*" >&2
  exit "$code"
}

[[ $PREFIX =~ ^[A-Za-z0-9]{1,10}$ ]] ||
  die "RINGPUSH_REGIONS_PREFIX must be 1-10 letters or digits (it goes into interface names of at most 15 characters), got '$PREFIX'"
if ! [[ $OCTET =~ ^[0-9]{1,3}$ ]] || ((10#$OCTET > 255)); then die "RINGPUSH_REGIONS_OCTET must be 0-255, got '$OCTET'"; fi
OCTET=$((10#$OCTET))
[[ $HEALTH_TIMEOUT =~ ^[0-9]+$ ]] || die "RINGPUSH_REGIONS_TIMEOUT must be a number of seconds"
case $DELAY_MODE in auto | netem | nfqueue) ;; *) die "RINGPUSH_REGIONS_DELAY must be auto, netem or nfqueue" ;; esac
SUBNET=10.$OCTET.0
HOST_IP=$SUBNET.1
BRIDGE=${PREFIX}br0
FORWARD_COMMENT=ringpush-three-regions-$PREFIX

ns_of() { printf '%s-%s' "$PREFIX" "$1"; }
ip_of() { printf '%s.%s' "$SUBNET" "${HOST_PART[$1]}"; }
veth_of() { printf '%s-%s-h' "$PREFIX" "$1"; }
in_ns() { local region=$1; shift; ip netns exec "$(ns_of "$region")" "$@"; }
ns_exists() { [[ -e /run/netns/$(ns_of "$1") ]]; }
link_exists() { ip link show dev "$1" >/dev/null 2>&1; }
others() { local r; for r in "${REGIONS[@]}"; do [[ $r == "$1" ]] || printf '%s\n' "$r"; done; }
is_region() { [[ -n ${CODE[$1]+x} ]]; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found${2:+ ($2)}; this script installs nothing"; }

# ---- processes ------------------------------------------------------------------------------

# Processes a region runs, in start order (delay only with the nfqueue latency).
procs_of() {
  printf '%s\n' redis
  [[ $(current_mode) == nfqueue ]] && printf '%s\n' delay
  printf '%s\n' controller dispatcher connector
}
current_mode() { if [[ -s $MODE_FILE ]]; then cat "$MODE_FILE"; else printf 'none'; fi; }
pidfile() { printf '%s/%s/%s.pid' "$DIR" "$1" "$2"; }
logfile() { printf '%s/%s/%s.log' "$DIR" "$1" "$2"; }

start_time() { # field 22 of /proc/PID/stat, which tells a reused pid apart; fails for zombies
  local stat rest fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  rest=${stat##*) }
  read -r -a fields <<<"$rest"
  [[ ${fields[0]} != [ZX] ]] || return 1
  printf '%s' "${fields[19]}"
}

pid_alive() { # pid_alive PIDFILE: the pid in it still runs the process we started
  local file=$1 pid started now
  [[ -s $file ]] || return 1
  read -r pid started <"$file" || true
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  now=$(start_time "$pid") || return 1
  [[ -z ${started:-} || $now == "$started" ]]
}

spawn() { # spawn REGION NAME CMD...: runs CMD in the region's namespace, detached, logged
  local region=$1 name=$2; shift 2
  local pf log pid
  pf=$(pidfile "$region" "$name")
  log=$(logfile "$region" "$name")
  rm -f "$pf"
  printf '\n=== %s: %s\n' "$(date '+%F %T')" "$*" >>"$log"
  # The wrapper writes its own pid, then execs into `ip netns exec`, which execs CMD: the pid
  # in the file is CMD's. setsid: its own session, out of our process group and terminal.
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid nohup bash -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1" && cd "$2" && shift 2 && exec ip netns exec "$@"' \
    spawn "$pf" "$DIR/$region" "$(ns_of "$region")" "$@" >>"$log" 2>&1 </dev/null &
  for _ in $(seq 100); do
    if [[ -s $pf ]]; then
      read -r pid <"$pf"
      printf '%s %s\n' "$pid" "$(start_time "$pid" || true)" >"$pf"
      return 0
    fi
    sleep 0.05
  done
  die "could not start $name in $region (see $log)"
}

tail_logs() { # tail_logs [REGION...]
  local region name log
  for region in "${@:-${REGIONS[@]}}"; do
    for name in redis delay controller dispatcher connector; do
      log=$(logfile "$region" "$name")
      [[ -s $log ]] || continue
      printf -- '--- %s (this run, last 20 lines)\n' "$log" >&2
      # From the last "=== date: command" line spawn wrote.
      awk '/^=== / { n = 0 } { line[n++] = $0 } END { for (i = (n > 20 ? n - 20 : 0); i < n; i++) print line[i] }' "$log" >&2 || true
    done
  done
}

# ---- state ----------------------------------------------------------------------------------

any_running() {
  local region name
  for region in "${REGIONS[@]}"; do
    for name in redis delay controller dispatcher connector; do
      pid_alive "$(pidfile "$region" "$name")" && return 0
    done
  done
  return 1
}

all_running() { # every namespace exists, every process runs, /healthz answers; DOWN lists what is not
  local region name down=()
  for region in "${REGIONS[@]}"; do
    ns_exists "$region" || down+=("namespace $(ns_of "$region")")
    while read -r name; do
      if ! pid_alive "$(pidfile "$region" "$name")"; then
        down+=("$region $name")
      elif [[ $name == controller ]]; then
        http_ok "http://$(ip_of "$region"):8080/healthz" || down+=("$region controller /healthz")
      elif [[ $name == dispatcher ]]; then
        http_ok "http://$(ip_of "$region"):8081/healthz" || down+=("$region dispatcher /healthz")
      fi
    done < <(procs_of)
  done
  DOWN=${down[*]+"${down[*]}"}
  [[ ${#down[@]} -eq 0 ]]
}

json_str() { # a JSON string literal
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

print_json() {
  local region ip sep='' cut_sep='' cuts='' token=''
  [[ -s $TOKEN_FILE ]] && token=$(cat "$TOKEN_FILE")
  for region in "${REGIONS[@]}"; do
    if is_cut "$region"; then cuts+="$cut_sep$(json_str "$region")"; cut_sep=', '; fi
  done
  printf '{"regions": ['
  for region in "${REGIONS[@]}"; do
    ip=$(ip_of "$region")
    printf '%s{"name": "%s", "code": %d, "namespace": "%s", "ip": "%s", "controller": "http://%s:8080", "dispatcher": "http://%s:8081", "redis": "redis://%s:6379", "connector": {"id": "%s-1", "device_listen": "%s:8082", "grpc_listen": "%s:8083"}, "config": %s}' \
      "$sep" "$region" "${CODE[$region]}" "$(ns_of "$region")" "$ip" "$ip" "$ip" "$ip" "$region" "$ip" "$ip" \
      "$(json_str "$DIR/$region/ringpush.toml")"
    sep=', '
  done
  printf '], "admin_token": %s, "cut": [%s], "latency": "%s", "host_ip": "%s", "dir": %s}\n' \
    "$(json_str "$token")" "$cuts" "$(current_mode)" "$HOST_IP" "$(json_str "$DIR")"
}

# ---- cut / heal -----------------------------------------------------------------------------

# The rules of `cut REGION`: "NAMESPACE_REGION SOURCE_IP" pairs, each a DROP in that namespace's
# raw PREROUTING for packets from that address, commented ringpush-cut-REGION.
cut_rules() {
  local region=$1 other
  while read -r other; do
    printf '%s %s\n' "$region" "$(ip_of "$other")"
    printf '%s %s\n' "$other" "$(ip_of "$region")"
  done < <(others "$region")
}

cut_rule_args() { printf '%s\n' PREROUTING -s "$2/32" -m comment --comment "ringpush-cut-$1" -j DROP; }

is_cut() {
  command -v iptables >/dev/null 2>&1 || return 1
  ns_exists "$1" || return 1
  local at src args
  read -r at src < <(cut_rules "$1")
  mapfile -t args < <(cut_rule_args "$1" "$src")
  in_ns "$at" iptables -w -t raw -C "${args[@]}" >/dev/null 2>&1
}

cmd_cut() {
  local region=$1 at src args
  need iptables "cut uses iptables inside the namespaces"
  for at in "${REGIONS[@]}"; do ns_exists "$at" || die "namespace $(ns_of "$at") does not exist; run start first"; done
  if is_cut "$region"; then log "$region is already cut"; return 0; fi
  while read -r at src; do
    mapfile -t args < <(cut_rule_args "$region" "$src")
    in_ns "$at" iptables -w -t raw -C "${args[@]}" >/dev/null 2>&1 ||
      in_ns "$at" iptables -w -t raw -A "${args[@]}"
  done < <(cut_rules "$region")
  log "cut $region ($(ip_of "$region")) from $(others "$region" | tr '\n' ' ')(both ways); $HOST_IP still reaches it"
}

cmd_heal() {
  local region=$1 at src args
  need iptables "heal uses iptables inside the namespaces"
  while read -r at src; do
    ns_exists "$at" || continue
    mapfile -t args < <(cut_rule_args "$region" "$src")
    while in_ns "$at" iptables -w -t raw -C "${args[@]}" >/dev/null 2>&1; do
      in_ns "$at" iptables -w -t raw -D "${args[@]}"
    done
  done < <(cut_rules "$region")
  log "healed $region"
}

# ---- network --------------------------------------------------------------------------------

bridge_netfilter_on() { [[ $(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || true) == 1 ]]; }
forward_rule() { printf '%s\n' FORWARD -i "$BRIDGE" -o "$BRIDGE" -m comment --comment "$FORWARD_COMMENT" -j ACCEPT; }

setup_network() {
  local region ns ip veth first=1 rule
  for region in "${REGIONS[@]}"; do
    ns=$(ns_of "$region")
    if ! ip netns add "$ns" 2>/dev/null || ! ip netns exec "$ns" true 2>/dev/null; then
      ip netns del "$ns" 2>/dev/null || true
      if ((first)); then
        die 2 "network namespaces are not allowed here ('ip netns add $ns' / 'ip netns exec' failed; needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN, outside a restricted container)"
      fi
      die "could not create namespace $ns"
    fi
    first=0
  done
  if ! link_exists "$BRIDGE"; then
    ip link add "$BRIDGE" type bridge || die "could not create bridge $BRIDGE"
  fi
  ip addr replace "$HOST_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for region in "${REGIONS[@]}"; do
    ns=$(ns_of "$region") ip=$(ip_of "$region") veth=$(veth_of "$region")
    ip link add "$veth" type veth peer name eth0 netns "$ns" || die "could not create veth $veth"
    ip link set "$veth" master "$BRIDGE"
    ip link set "$veth" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  # With br_netfilter loaded, bridged packets cross the host's FORWARD chain; a DROP policy
  # there (docker sets one) would cut the regions from each other.
  if bridge_netfilter_on && command -v iptables >/dev/null 2>&1; then
    mapfile -t rule < <(forward_rule)
    iptables -w -C "${rule[@]}" >/dev/null 2>&1 || iptables -w -I "${rule[@]:0:1}" 1 "${rule[@]:1}"
  fi
}

netem_works() { # tries the netem setup on the first namespace's eth0 and takes it down again
  local region=${REGIONS[0]} ok=0
  in_ns "$region" tc qdisc add dev eth0 root handle 1: prio bands 2 priomap 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 2>/dev/null &&
    in_ns "$region" tc qdisc add dev eth0 parent 1:1 handle 10: netem delay 1ms 2>/dev/null &&
    in_ns "$region" tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst "$HOST_IP/32" flowid 1:1 2>/dev/null &&
    ok=1
  in_ns "$region" tc qdisc del dev eth0 root 2>/dev/null || true
  ((ok))
}

setup_latency_netem() {
  local region other
  for region in "${REGIONS[@]}"; do
    # Band 1:2 (where the priomap sends everything) is undelayed; the filters put what goes to
    # another region on band 1:1, whose child is the netem.
    in_ns "$region" tc qdisc replace dev eth0 root handle 1: prio bands 2 priomap 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1
    in_ns "$region" tc qdisc add dev eth0 parent 1:1 handle 10: netem delay "${DELAY_MS[$region]}ms" limit 100000
    while read -r other; do
      in_ns "$region" tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst "$(ip_of "$other")/32" flowid 1:1
    done < <(others "$region")
  done
}

setup_latency_nfqueue() {
  local region other queues ready
  for region in "${REGIONS[@]}"; do
    # Queue number = the sender's region code; its delay = the sender's delay.
    queues=()
    while read -r other; do queues+=(--queue "${CODE[$other]}:${DELAY_MS[$other]}"); done < <(others "$region")
    ready=$DIR/$region/delay.ready
    rm -f "$ready"
    spawn "$region" delay "$PYTHON" "$SCRIPT_DIR/nfqueue-delay.py" "${queues[@]}" --ready-file "$ready"
  done
  for region in "${REGIONS[@]}"; do
    ready=$DIR/$region/delay.ready
    for _ in $(seq 100); do [[ -s $ready ]] && break; pid_alive "$(pidfile "$region" delay)" || break; sleep 0.05; done
    [[ -s $ready ]] || { tail_logs "$region"; die "the NFQUEUE delayer did not start in $region"; }
    while read -r other; do
      in_ns "$region" iptables -w -t mangle -A PREROUTING -s "$(ip_of "$other")/32" \
        -m comment --comment ringpush-delay -j NFQUEUE --queue-num "${CODE[$other]}"
    done < <(others "$region")
  done
}

setup_latency() {
  local mode=$DELAY_MODE
  if [[ $mode == auto ]]; then
    if netem_works; then mode=netem; else
      mode=nfqueue
      log "tc refuses prio/netem here (kernel without sch_netem or sch_prio); delaying with NFQUEUE + nfqueue-delay.py"
    fi
  fi
  if [[ $mode == nfqueue ]]; then
    need iptables "the nfqueue latency uses iptables NFQUEUE rules"
    need python3 "the nfqueue latency runs deploy/local/nfqueue-delay.py"
    PYTHON=$(command -v python3)
  else
    need tc "the netem latency uses tc"
    netem_works || die "RINGPUSH_REGIONS_DELAY=netem, but tc refuses the prio qdisc, netem or u32 filters here (kernel without sch_prio/sch_netem/cls_u32?); use nfqueue or auto"
  fi
  printf '%s\n' "$mode" >"$MODE_FILE"
  log "latency: $mode (cn +${DELAY_MS[cn]} ms, us +${DELAY_MS[us]} ms, eu +${DELAY_MS[eu]} ms on what each sends to another region)"
  "setup_latency_$mode"
}

check_latency() { # warns when a measured round trip is off; needs ping
  command -v ping >/dev/null 2>&1 || { log "ping not found; not measuring the round trips"; return 0; }
  local a b expect got pairs=("cn us" "cn eu" "us eu") pair line=''
  for pair in "${pairs[@]}"; do
    read -r a b <<<"$pair"
    expect=$((${DELAY_MS[$a]} + ${DELAY_MS[$b]}))
    got=$(rtt_ms "$a" "$(ip_of "$b")")
    line+="$a-$b ${got:-?} ms (want $expect), "
    if [[ -z $got ]] || ! awk -v g="$got" -v e="$expect" 'BEGIN { exit !(g > e - 10 && g < e + 15) }'; then
      log "warning: round trip $a -> $b is ${got:-unmeasurable} ms, expected about $expect ms"
    fi
  done
  for a in "${REGIONS[@]}"; do
    got=$(rtt_ms host "$(ip_of "$a")")
    line+="host-$a ${got:-?} ms, "
    if [[ -z $got ]] || ! awk -v g="$got" 'BEGIN { exit !(g < 5) }'; then
      log "warning: round trip host -> $a is ${got:-unmeasurable} ms, expected about 0"
    fi
  done
  log "round trips: ${line%, }"
}

rtt_ms() { # rtt_ms FROM(region|host) IP: average ping round trip in ms (user-to-user time)
  local out
  if [[ $1 == host ]]; then
    out=$(ping -U -n -q -c 3 -i 0.2 -W 2 "$2" 2>/dev/null) || return 0
  else
    out=$(in_ns "$1" ping -U -n -q -c 3 -i 0.2 -W 2 "$2" 2>/dev/null) || return 0
  fi
  sed -n 's|^rtt [^=]*= [0-9.]*/\([0-9.]*\)/.*|\1|p' <<<"$out"
}

teardown_network() {
  local region rule
  for region in "${REGIONS[@]}"; do
    if ns_exists "$region"; then ip netns del "$(ns_of "$region")" || log "could not delete namespace $(ns_of "$region")"; fi
    if link_exists "$(veth_of "$region")"; then ip link del "$(veth_of "$region")" || true; fi
  done
  if link_exists "$BRIDGE"; then ip link del "$BRIDGE" || log "could not delete bridge $BRIDGE"; fi
  if command -v iptables >/dev/null 2>&1; then
    mapfile -t rule < <(forward_rule)
    while iptables -w -C "${rule[@]}" >/dev/null 2>&1; do iptables -w -D "${rule[@]}"; done
  fi
}

# ---- start / stop / status ------------------------------------------------------------------

resolve_bin() {
  local bin=${RINGPUSH_BIN:-}
  if [[ -z $bin ]]; then
    if [[ -x $REPO_ROOT/target/debug/ringpush ]]; then
      bin=$REPO_ROOT/target/debug/ringpush
    else
      bin=$(command -v ringpush 2>/dev/null || true)
      [[ -n $bin ]] || die "ringpush binary not found: no $REPO_ROOT/target/debug/ringpush (cargo build -p ringpush) and no ringpush on PATH; or set RINGPUSH_BIN"
    fi
  elif [[ $bin != */* ]]; then
    bin=$(command -v "$bin" 2>/dev/null || true)
    [[ -n $bin ]] || die "RINGPUSH_BIN=${RINGPUSH_BIN} is not on PATH"
  fi
  [[ -f $bin && -x $bin ]] || die "RINGPUSH_BIN: $bin is not an executable file"
  bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
  printf '%s' "$bin"
}

write_config() {
  local region=$1 other ip
  {
    printf '# Written by deploy/local/three-regions.sh\n'
    printf 'region = "%s"\n' "$region"
    printf 'redis_url = "redis://%s:6379"\n' "$(ip_of "$region")"
    for other in "${REGIONS[@]}"; do
      ip=$(ip_of "$other")
      printf '\n[[regions]]\nname = "%s"\ncode = %d\n' "$other" "${CODE[$other]}"
      printf 'redis_url = "redis://%s:6379"\n' "$ip"
      printf 'controller_url = "http://%s:8080"\n' "$ip"
      printf 'dispatcher_url = "http://%s:8081"\n' "$ip"
    done
  } >"$DIR/$region/ringpush.toml"
}

redis_pong() {
  if command -v redis-cli >/dev/null 2>&1; then
    [[ $(timeout 2 redis-cli -h "$1" -p 6379 ping 2>/dev/null || true) == PONG ]]
  else
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/6379" && printf "PING\r\n" >&3 && read -r line <&3 && [[ $line == +PONG* ]]' "$1" 2>/dev/null
  fi
}

http_ok() { [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true) == 200 ]]; }

check_started() { # check_started REGION...: fails fast when a process died
  local region name
  for region in "$@"; do
    while read -r name; do
      pid_alive "$(pidfile "$region" "$name")" && continue
      tail_logs "$region"
      die "$region $name exited during start (log: $(logfile "$region" "$name")); '$0 stop' cleans up"
    done < <(procs_of)
  done
}

cmd_start() {
  if all_running; then
    log "already running (dir $DIR)"
    print_json
    return 0
  fi
  if any_running; then
    die "partly running (down: $DOWN); run '$0 stop' first"
  fi
  need ip "iproute2"
  need curl
  local bin redis region ip deadline pending token
  bin=$(resolve_bin)
  redis=$(command -v "$REDIS_SERVER" 2>/dev/null || true)
  [[ -n $redis ]] || die "$REDIS_SERVER not found (apt-get install redis-server, or set REDIS_SERVER)"

  # Leftovers of a start that failed halfway.
  local leftover=0
  for region in "${REGIONS[@]}"; do ns_exists "$region" && leftover=1; link_exists "$(veth_of "$region")" && leftover=1; done
  link_exists "$BRIDGE" && leftover=1
  if ((leftover)); then log "removing leftover namespaces/links of an earlier run"; teardown_network; fi
  local in_use
  in_use=$(ip -4 -o addr show | awk -v br="$BRIDGE" -v net="$SUBNET." '$2 != br && index($4, net) == 1 { print $2 }')
  if [[ -n $in_use ]]; then
    die "10.$OCTET.0.0/24 is already in use on this machine (on $in_use); pick another RINGPUSH_REGIONS_OCTET"
  fi

  mkdir -p "$DIR"
  rm -f "$MODE_FILE"
  for region in "${REGIONS[@]}"; do
    mkdir -p "$DIR/$region"
    rm -f "$DIR/$region"/*.pid "$DIR/$region/delay.ready"
    [[ $KEEP_DATA == 1 ]] || rm -rf "$DIR/$region/redis"
    mkdir -p "$DIR/$region/redis"
    write_config "$region"
  done
  token=${RINGPUSH_ADMIN_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
  (umask 077 && printf '%s\n' "$token" >"$TOKEN_FILE")

  log "network: bridge $BRIDGE $HOST_IP/24, namespaces $(for r in "${REGIONS[@]}"; do printf '%s=%s ' "$(ns_of "$r")" "$(ip_of "$r")"; done)"
  setup_network
  setup_latency
  check_latency

  for region in "${REGIONS[@]}"; do
    ip=$(ip_of "$region")
    spawn "$region" redis "$redis" --port 6379 --bind "$ip" --save '' --appendonly yes \
      --dir "$DIR/$region/redis" --protected-mode no --daemonize no
  done
  deadline=$((SECONDS + HEALTH_TIMEOUT))
  for region in "${REGIONS[@]}"; do
    until redis_pong "$(ip_of "$region")"; do
      pid_alive "$(pidfile "$region" redis)" || { tail_logs "$region"; die "redis in $region exited"; }
      ((SECONDS < deadline)) || { tail_logs "$region"; die "redis in $region does not answer PING"; }
      sleep 0.1
    done
  done
  log "redis answers PING in every region"

  for region in "${REGIONS[@]}"; do
    ip=$(ip_of "$region")
    spawn "$region" controller "$bin" controller --config "$DIR/$region/ringpush.toml" --listen "$ip:8080" --admin-token "$token"
    spawn "$region" dispatcher "$bin" dispatcher --config "$DIR/$region/ringpush.toml" --listen "$ip:8081"
    spawn "$region" connector "$bin" connector --config "$DIR/$region/ringpush.toml" --id "$region-1" \
      --device-listen "$ip:8082" --grpc-listen "$ip:8083"
  done

  deadline=$((SECONDS + HEALTH_TIMEOUT))
  while :; do
    check_started "${REGIONS[@]}"
    pending=()
    for region in "${REGIONS[@]}"; do
      ip=$(ip_of "$region")
      http_ok "http://$ip:8080/healthz" || pending+=("$region controller")
      http_ok "http://$ip:8081/healthz" || pending+=("$region dispatcher")
    done
    [[ ${#pending[@]} -eq 0 ]] && break
    if ((SECONDS >= deadline)); then
      tail_logs
      die "no 200 from /healthz within ${HEALTH_TIMEOUT}s: ${pending[*]}; '$0 stop' cleans up"
    fi
    sleep 0.2
  done
  log "all three regions are up (logs in $DIR/<region>/*.log)"
  print_json
}

cmd_stop() {
  local region name pid started pids=() left
  for region in "${REGIONS[@]}"; do
    for name in redis delay controller dispatcher connector; do
      pid_alive "$(pidfile "$region" "$name")" || continue
      read -r pid started <"$(pidfile "$region" "$name")" || true
      pids+=("$pid")
    done
    # Anything else left in our namespaces (children, or a start whose pid files are gone).
    if ns_exists "$region"; then
      while read -r pid; do [[ -n $pid ]] && pids+=("$pid"); done < <(ip netns pids "$(ns_of "$region")" 2>/dev/null || true)
    fi
  done
  if [[ ${#pids[@]} -gt 0 ]]; then
    mapfile -t pids < <(printf '%s\n' "${pids[@]}" | sort -un)
    log "stopping ${#pids[@]} processes"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
      left=()
      for pid in "${pids[@]}"; do start_time "$pid" >/dev/null && left+=("$pid"); done
      [[ ${#left[@]} -eq 0 ]] && break
      sleep 0.1
    done
    if [[ ${#left[@]} -gt 0 ]]; then
      log "killing ${#left[@]} that ignored TERM for 5 s: ${left[*]}"
      kill -KILL "${left[@]}" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  teardown_network
  for region in "${REGIONS[@]}"; do rm -f "$DIR/$region"/*.pid "$DIR/$region/delay.ready"; done
  rm -f "$MODE_FILE"
  log "stopped (logs kept in $DIR)"
}

cmd_status() {
  if all_running; then
    print_json
    return 0
  fi
  if any_running || ns_exists cn || ns_exists us || ns_exists eu; then
    log "not fully running; down: $DOWN"
  else
    log "not running"
  fi
  return 1
}

usage() {
  printf 'usage: %s start|stop|status|cut REGION|heal REGION   (REGION: cn, us or eu)\n' "$0" >&2
  exit 64
}

[[ $(id -u) -eq 0 ]] || die "run as root (network namespaces, bridges and tc need it)"
case ${1:-} in
  start) [[ $# -eq 1 ]] || usage; cmd_start ;;
  stop) [[ $# -eq 1 ]] || usage; cmd_stop ;;
  status) [[ $# -eq 1 ]] || usage; cmd_status ;;
  cut | heal)
    [[ $# -eq 2 ]] || usage
    is_region "$2" || die "unknown region '$2' (cn, us or eu)"
    "cmd_$1" "$2"
    ;;
  *) usage ;;
esac
