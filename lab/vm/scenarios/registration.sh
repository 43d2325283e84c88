#!/bin/sh
# In-VM scenario of issue 5's kernel acceptance: IMS registration with kernel IPsec on both ends.
#
#   namespace core: `imslab net serve --ipsec kernel` (HSS + P-CSCF) on 10.77.0.1
#   namespace ue0:  `imslab ue register --ipsec kernel`, subscriber 0, on 10.77.0.2
#   namespace ue1:  the same for subscriber 1 on 10.77.1.2 (routed to 10.77.0.1 via 10.77.1.1)
#   both UEs: register → re-register → deregister, side by side; then both register again
#   and ue0 calls ue1 (INVITE … BYE over kernel ESP on both ends; the INVITE and the protected
#   REGISTERs over TCP inside ESP, RFC 3261 §18.1.1), and both deregister
#   veth pairs core/c0 ⇄ ue0/u0 (10.77.0.0/24), core/c1 ⇄ ue1/u1 (10.77.1.0/24): addresses
#   that exist only inside the VM
#
# One namespace per UE process here, as UEs are separate hosts; UE processes sharing one
# namespace (each with its own XFRM tag) are the xfrm-tags phase at the end (xfrm-tags.sh).
#
# Between the steps the SAs of all namespaces are read with `ip -s xfrm state`: every UE and
# the P-CSCF must hold their SA sets with the kernel's ESP packet counters risen; at the end no
# SA and no policy may be left in any namespace. Each check prints one line
# `REGTEST PASS|FAIL <name> <details>`, then `REGTEST SUMMARY passed=N failed=M`; the exit status
# is non-zero if any check failed. Logs and key files go to /out; with dumpcap in the VM
# (VM_EXTRA_BINS=/usr/bin/dumpcap) also core.pcapng, the core namespace's side of both veths,
# which the host test decrypts with the esp_sa files.
#
# Needs /payload/imslab (and /payload/xfrm-tags.sh for the tags phase). Run by lab/vm/run.sh (lab/tests/vm_registration.rs). For a dry run
# elsewhere: IMSLAB=<path> BACKEND=userspace OUT=<dir> sh registration.sh (root; uses
# namespaces named imslab-reg-core/-ue0/-ue1).

IMSLAB="${IMSLAB:-/payload/imslab}"
BACKEND="${BACKEND:-kernel}"
OUT="${OUT:-/out}"
IP=/usr/sbin/ip
CORE="${NS_PREFIX:-imslab-reg}-core"
UE0="${NS_PREFIX:-imslab-reg}-ue0"
UE1="${NS_PREFIX:-imslab-reg}-ue1"
PCSCF_IP=10.77.0.1
# Long enough for the script to read the counters while the UEs hold a registration, even on
# qemu TCG.
PAUSE_MS="${PAUSE_MS:-5000}"
WORK="$(mktemp -d /tmp/regtest.XXXXXX)"
mkdir -p "$OUT"

passed=0
failed=0
check() { # check <ok:0|1> <name> <details...>
    ok="$1"; name="$2"; shift 2
    if [ "$ok" = 1 ]; then
        passed=$((passed + 1)); echo "REGTEST PASS $name $*"
    else
        failed=$((failed + 1)); echo "REGTEST FAIL $name $*"
    fi
}
uptime_s() { cut -d' ' -f1 /proc/uptime; }
t0="$(uptime_s)"
elapsed() { awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }'; }

net_pid=""
cap_pid=""
cleanup() {
    [ -n "$net_pid" ] && kill "$net_pid" 2>/dev/null
    [ -n "$cap_pid" ] && kill "$cap_pid" 2>/dev/null
    # shellcheck disable=SC2086 # the processes of the xfrm-tags phase, if it got that far
    [ -n "${TAGS_PIDS:-}" ] && kill -9 $TAGS_PIDS 2>/dev/null
    for ns in "$CORE" "$UE0" "$UE1" "${TC:-}" "${TU:-}"; do
        [ -n "$ns" ] && $IP netns del "$ns" 2>/dev/null
    done
}
trap cleanup EXIT

finish() {
    echo "REGTEST SUMMARY passed=$passed failed=$failed elapsed=$(elapsed)s"
    cp "$WORK"/*.log "$OUT"/ 2>/dev/null
    [ "$failed" = 0 ] && [ "$passed" -gt 0 ]
    exit $?
}

# `ip -s xfrm state` of a namespace, summarised: "states=N active=M packets=P" where active
# counts SAs whose kernel packet counter ("lifetime current: … (packets)") is above zero.
xfrm_summary() {
    $IP netns exec "$1" $IP -s xfrm state 2>&1 | tee -a "$WORK/xfrm-$1.log" | awk '
        /^src / { n++ }
        cur && /\(packets\)/ { pk = $0; sub(/\(packets\).*/, "", pk); sub(/.*[ ,]/, "", pk)
                               pk += 0; total += pk; if (pk > 0) act++; cur = 0; next }
        /lifetime current:/ { cur = 1 }
        END { printf "states=%d active=%d packets=%d\n", n, act, total }'
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# counters <check-name>: the protected REGISTER (UE→P-CSCF) and its 200 OK (P-CSCF→UE) crossed
# kernel ESP, so at least these two SAs per UE counted packets, on both ends.
counters() {
    ca=$(field "$core_s" active); cp=$(field "$core_s" packets)
    a0=$(field "$ue0_s" active); p0=$(field "$ue0_s" packets)
    a1=$(field "$ue1_s" active); p1=$(field "$ue1_s" packets)
    check "$([ "$ca" -ge 4 ] && [ "$a0" -ge 2 ] && [ "$a1" -ge 2 ] && [ "$cp" -ge 4 ] \
        && [ "$p0" -ge 2 ] && [ "$p1" -ge 2 ] && echo 1 || echo 0)" "$1" \
        "core_active=$ca core_packets=$cp ue0_active=$a0 ue0_packets=$p0 ue1_active=$a1 ue1_packets=$p1"
}
policies() { $IP netns exec "$1" $IP xfrm policy 2>&1 | grep -c '^src '; }
dump() { # dump <label>: every namespace's SAs into the logs; summaries in core_s ue0_s ue1_s
    for ns in "$CORE" "$UE0" "$UE1"; do echo "=== $1 ($(elapsed)s)" >>"$WORK/xfrm-$ns.log"; done
    core_s="$(xfrm_summary "$CORE")"
    ue0_s="$(xfrm_summary "$UE0")"
    ue1_s="$(xfrm_summary "$UE1")"
}
# wait_for <file> <pattern> <count> <seconds>: until <file> has <count> lines matching.
wait_for() {
    i=0
    while [ "$i" -lt $(($4 * 10)) ]; do
        n="$(grep -c -- "$2" "$1" 2>/dev/null)"
        [ "${n:-0}" -ge "$3" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

echo "REGTEST start backend=$BACKEND kernel=$(uname -r)"
# --- network: the core namespace with one veth pair to each UE namespace
cleanup
setup_net() {
    $IP netns add "$CORE" && $IP netns add "$UE0" && $IP netns add "$UE1" \
        && $IP link add c0 netns "$CORE" type veth peer name u0 netns "$UE0" \
        && $IP link add c1 netns "$CORE" type veth peer name u1 netns "$UE1" \
        && $IP -n "$CORE" link set lo up && $IP -n "$UE0" link set lo up && $IP -n "$UE1" link set lo up \
        && $IP -n "$CORE" addr add "$PCSCF_IP/24" dev c0 && $IP -n "$CORE" link set c0 up \
        && $IP -n "$CORE" addr add 10.77.1.1/24 dev c1 && $IP -n "$CORE" link set c1 up \
        && $IP -n "$UE0" addr add 10.77.0.2/24 dev u0 && $IP -n "$UE0" link set u0 up \
        && $IP -n "$UE1" addr add 10.77.1.2/24 dev u1 && $IP -n "$UE1" link set u1 up \
        && $IP -n "$UE1" route add default via 10.77.1.1
}
if setup_net; then ok=1; else ok=0; fi
check "$ok" namespaces "core=$CORE ue0=$UE0 ue1=$UE1 veth c0/u0 10.77.0.0/24 c1/u1 10.77.1.0/24"
[ "$failed" = 0 ] || finish
# veth carrier settles quickly; make sure both paths work.
ok=1
for ns in "$UE0" "$UE1"; do
    good=0
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        $IP netns exec "$ns" busybox ping -c 1 -W 1 "$PCSCF_IP" >/dev/null 2>&1 && { good=1; break; }
    done
    [ "$good" = 1 ] || ok=0
done
check "$ok" veth-ping "ue0, ue1 → $PCSCF_IP"

# --- capture (optional): what the core namespace sees on both veths, for tshark on the host
if command -v dumpcap >/dev/null 2>&1; then
    $IP netns exec "$CORE" dumpcap -q -i c0 -i c1 -w "$OUT/core.pcapng" >"$WORK/dumpcap.log" 2>&1 &
    cap_pid=$!
    # dumpcap says "Capturing on …" once both interfaces are open
    if wait_for "$WORK/dumpcap.log" "Capturing on" 1 30; then
        check 1 capture-started "$(tr '\n' ' ' <"$WORK/dumpcap.log")"
    else
        check 0 capture-started "$(tr '\n' ' ' <"$WORK/dumpcap.log")"
    fi
else
    echo "REGTEST info no dumpcap in the VM: no capture"
fi

# --- core: HSS + P-CSCF with the kernel backend
$IP netns exec "$CORE" "$IMSLAB" net serve --sip "$PCSCF_IP:5060" --ipsec "$BACKEND" \
    --subscribers 2 --config-dir "$WORK/core" >"$WORK/net.log" 2>&1 &
net_pid=$!
if wait_for "$WORK/net.log" "^imslab net: ready" 1 60; then
    check 1 net-ready "$(grep '^imslab net: ready' "$WORK/net.log")"
else
    check 0 net-ready "no ready line; log: $(tail -n 20 "$WORK/net.log")"
    finish
fi
if grep -q "ipsec=$BACKEND " "$WORK/net.log"; then ok=1; else ok=0; fi
check "$ok" pcscf-backend "want ipsec=$BACKEND"

# --- the UEs: subscribers 0 and 1, one namespace each, running side by side (bounded: a hung
# UE must not eat the VM's whole time budget)
i=0
for addr in 10.77.0.2 10.77.1.2; do
    eval "ns=\$UE$i"
    # shellcheck disable=SC2046 # the subscriber's arguments are meant to split
    timeout -s KILL 90 $IP netns exec "$ns" "$IMSLAB" ue register --ipsec "$BACKEND" --pcscf "$PCSCF_IP:5060" \
        --local-ip "$addr" $("$IMSLAB" net subscribers --index "$i" --ue-args) \
        --then "pause:$PAUSE_MS,reregister,pause:$PAUSE_MS,deregister" \
        --esp-sa "$WORK/ue$i.esp_sa" >"$WORK/ue$i.log" 2>&1 &
    eval "ue${i}_pid=$!"
    i=$((i + 1))
done

# Registered: each UE holds 4 SAs (its half), the P-CSCF 4 per UE (its half); the
# protected REGISTER and its 200 OK crossed kernel ESP on both sides.
ok=1
for i in 0 1; do
    wait_for "$WORK/ue$i.log" "✔ registration done" 1 30 || ok=0
done
check "$ok" ues-registered "$(grep -h '✔ registration done' "$WORK"/ue*.log | tr -s ' ' | tr '\n' ';')"
dump registered
echo "REGTEST info after-registration core[$core_s] ue0[$ue0_s] ue1[$ue1_s]"
if [ "$BACKEND" = kernel ]; then
    cs=$(field "$core_s" states); u0s=$(field "$ue0_s" states); u1s=$(field "$ue1_s" states)
    check "$([ "$cs" = 8 ] && [ "$u0s" = 4 ] && [ "$u1s" = 4 ] && echo 1 || echo 0)" \
        sa-sets-installed "core_states=$cs ue0_states=$u0s ue1_states=$u1s"
    counters esp-counters-registered
fi

ok=1
for i in 0 1; do
    wait_for "$WORK/ue$i.log" "✔ re-registration done" 1 30 || ok=0
done
check "$ok" ues-reregistered "$(grep -h '✔ re-registration done' "$WORK"/ue*.log | tr -s ' ' | tr '\n' ';')"
dump reregistered
echo "REGTEST info after-reregistration core[$core_s] ue0[$ue0_s] ue1[$ue1_s]"
if [ "$BACKEND" = kernel ]; then
    # The re-registration (re-authenticated: 401 then REGISTER on the new set) used new SAs;
    # the retired set may still be in its grace period.
    counters esp-counters-reregistered
fi

# Deregistered: both UE processes exit 0 after their deregistration and the SA grace.
for i in 0 1; do
    pid=""
    eval "pid=\$ue${i}_pid"
    wait "$pid"
    rc=$?
    grep -q '^deregistered in' "$WORK/ue$i.log"
    d=$?
    check "$([ "$rc" = 0 ] && [ "$d" = 0 ] && echo 1 || echo 0)" "ue$i-exit" \
        "rc=$rc $(grep -h -e '^registered in' -e '^re-registered in' -e '^deregistered in' "$WORK/ue$i.log" | cut -d'(' -f1 | tr -s ' ' | tr '\n' ';')"
done

# Nothing left behind: the UEs deleted their SAs before exiting; the P-CSCF deletes its sets
# after a short grace following the deregistration (so the 200 OK still went out protected).
ok=0
for _ in $(seq 1 40); do
    dump deregistered
    if [ "$(field "$core_s" states)" = 0 ] && [ "$(field "$ue0_s" states)" = 0 ] \
        && [ "$(field "$ue1_s" states)" = 0 ] && [ "$(policies "$CORE")" = 0 ] \
        && [ "$(policies "$UE0")" = 0 ] && [ "$(policies "$UE1")" = 0 ]; then
        ok=1
        break
    fi
    sleep 0.2
done
check "$ok" nothing-left-after-deregistration \
    "core[$core_s policies=$(policies "$CORE")] ue0[$ue0_s policies=$(policies "$UE0")]" \
    "ue1[$ue1_s policies=$(policies "$UE1")]"

# --- issue 9: a call between the two UEs, kernel IPsec on both ends. ue1 registers and waits
# (answers after 500 ms); ue0 registers, calls ue1, holds 2 s and hangs up; both deregister.
IMPU1="$("$IMSLAB" net subscribers --index 1 | sed -n 's/.* impu=\([^ ]*\).*/\1/p')"
# shellcheck disable=SC2046 # the subscriber's arguments are meant to split
timeout -s KILL 90 $IP netns exec "$UE1" "$IMSLAB" ue call --ipsec "$BACKEND" --pcscf "$PCSCF_IP:5060" \
    --local-ip 10.77.1.2 $("$IMSLAB" net subscribers --index 1 --ue-args) \
    --answer auto:500 --wait-ms 60000 >"$WORK/call-ue1.log" 2>&1 &
callee_pid=$!
wait_for "$WORK/call-ue1.log" "✔ registration done" 1 30
# shellcheck disable=SC2046
timeout -s KILL 90 $IP netns exec "$UE0" "$IMSLAB" ue call --ipsec "$BACKEND" --pcscf "$PCSCF_IP:5060" \
    --local-ip 10.77.0.2 $("$IMSLAB" net subscribers --index 0 --ue-args) \
    --to "$IMPU1" --hold-ms 2000 >"$WORK/call-ue0.log" 2>&1 &
caller_pid=$!
wait "$caller_pid"
rc0=$?
wait "$callee_pid"
rc1=$?
check "$([ "$rc0" = 0 ] && grep -q 'answered after' "$WORK/call-ue0.log" && echo 1 || echo 0)" \
    call-caller "rc=$rc0 to=$IMPU1 $(grep -h -e 'answered after' -e 'ended' "$WORK/call-ue0.log" | tr -s ' ' | tr '\n' ';')"
check "$([ "$rc1" = 0 ] && grep -q 'incoming call' "$WORK/call-ue1.log" && echo 1 || echo 0)" \
    call-callee "rc=$rc1 $(grep -h -e 'incoming call' -e 'ended' "$WORK/call-ue1.log" | tr -s ' ' | tr '\n' ';')"

if [ -n "$cap_pid" ]; then
    kill -INT "$cap_pid"
    wait "$cap_pid"
    rc=$?
    cap_pid=""
    check "$([ "$rc" = 0 ] && [ -s "$OUT/core.pcapng" ] && echo 1 || echo 0)" capture-stopped \
        "rc=$rc bytes=$(wc -c <"$OUT/core.pcapng" 2>/dev/null)"
fi

# Stop the network: SIGTERM, clean exit, its stop line with the counters.
kill -TERM "$net_pid"
wait "$net_pid"
rc=$?
net_pid=""
stop="$(grep '^imslab net: stopped' "$WORK/net.log")"
check "$([ "$rc" = 0 ] && [ -n "$stop" ] && echo 1 || echo 0)" net-stopped "rc=$rc $stop"
case "$stop" in
    *" registrations=6 deregistrations=4 rejections=0 "*) ok=1 ;;
    *) ok=0 ;;
esac
check "$ok" pcscf-counters "want registrations=6 deregistrations=4 rejections=0"
dump stopped
check "$([ "$(field "$core_s" states)" = 0 ] && [ "$(policies "$CORE")" = 0 ] && echo 1 || echo 0)" \
    nothing-left-after-stop "core[$core_s policies=$(policies "$CORE")]"

# Issue 8: two P-CSCF processes in one namespace and UE processes sharing another, each
# keeping its own tagged XFRM state through the others' starts, stops, crashes and restarts.
if [ "$BACKEND" = kernel ]; then
    TAGS_SCRIPT="$(dirname "$0")/xfrm-tags.sh"
    if [ -f "$TAGS_SCRIPT" ]; then
        # shellcheck source=xfrm-tags.sh
        . "$TAGS_SCRIPT"
    else
        check 0 xfrm-tags-phase "no $TAGS_SCRIPT"
    fi
fi

cp "$WORK/core/esp_sa" "$OUT/pcscf.esp_sa" 2>/dev/null
cp "$WORK"/ue*.esp_sa "$OUT"/ 2>/dev/null
cp "$WORK/core/pcscf.toml" "$WORK/core/hss.toml" "$OUT"/ 2>/dev/null
finish
