# Sourced by registration.sh (shares its check/wait_for/finish helpers and $IMSLAB, $IP,
# $WORK): issue 8's per-instance XFRM tags on a real kernel with ESP.
#
#   namespace tcore: two `imslab net serve --ipsec kernel` (HSS + P-CSCF), A on 10.78.0.1:5060
#                    and B on 10.78.0.3:5060
#   namespace tue:   `imslab ue register --ipsec kernel` processes on 10.78.0.2 (→ A),
#                    10.78.0.4 (→ B) and briefly 10.78.0.5 (→ B)
#
# Every process tags its XFRM state with its own selector user id (xfrm::Tag::for_instance of
# its role and SIP address; the P-CSCFs print it as xfrm_user= in their ready line, the UEs
# in their first line). `ip -s xfrm state|policy` shows it as `uid N`; each check compares
# the SPIs carrying each tag before and after one process starts, stops, crashes (SIGKILL)
# or restarts: the others' SPIs must be exactly unchanged, and a restarted process must have
# flushed its own leftovers (none of its old SPIs remain).

TC="${NS_PREFIX:-imslab-reg}-tcore"
TU="${NS_PREFIX:-imslab-reg}-tue"
TAGS_PIDS=""

# tag_spis <ns> <state|policy> <uid>: the SPIs of the objects carrying selector user <uid>,
# sorted, space separated.
tag_spis() {
    $IP netns exec "$1" $IP -s xfrm "$2" 2>/dev/null | awk -v want="$3" -v kind="$2" '
        /^src / { uid = ""; spi = ""
                  if (kind == "policy") for (i = 1; i < NF; i++) if ($i == "uid") uid = $(i + 1) }
        /proto esp spi / { for (i = 1; i < NF; i++) if ($i == "spi") { spi = $(i + 1); sub(/\(.*/, "", spi) }
                           if (kind == "policy" && uid == want) print spi }
        kind == "state" && /^[ \t]*sel / { for (i = 1; i < NF; i++) if ($i == "uid") uid = $(i + 1)
                                           if (uid == want) print spi }' | sort | tr '\n' ' ' | sed 's/ $//'
}
count() { [ -z "$1" ] && echo 0 || echo "$1" | wc -w; }
# snap <label> <ns> <uid>: state SPIs into snap_sas, policy SPIs into snap_pols, and
# "<label>=<states>/<policies>" into snap_d (variables: a $(…) subshell would lose them).
snap() {
    snap_sas="$(tag_spis "$2" state "$3")"
    snap_pols="$(tag_spis "$2" policy "$3")"
    snap_d="$1=$(count "$snap_sas")/$(count "$snap_pols")"
}
# tcheck <ok> <name> <details…>: check, with the phase's clock.
tcheck() {
    tok="$1"; tname="$2"; shift 2
    check "$tok" "$tname" "$* t=$(elapsed)s"
}
# disjoint "<a b c>" "<d e>": no SPI in both lists.
disjoint() {
    for s in $1; do case " $2 " in *" $s "*) return 1 ;; esac; done
    return 0
}
# settle <ns> <uid> <n>: until <n> SAs carry <uid> (retired sets leave after the P-CSCF's
# 2 s grace), at most 10 s.
settle() {
    i=0
    while [ "$(count "$(tag_spis "$1" state "$2")")" != "$3" ] && [ "$i" -lt 50 ]; do
        sleep 0.2
        i=$((i + 1))
    done
}

net_start() { # net_start <A|B> <ip> <diameter port>
    $IP netns exec "$TC" "$IMSLAB" net serve --sip "$2:5060" --ipsec "$BACKEND" \
        --diameter "$3" --subscribers 2 --config-dir "$WORK/t$1" >>"$WORK/tags-net$1.log" 2>&1 &
    eval "net$1_pid=$!"
    TAGS_PIDS="$TAGS_PIDS $!"
}
net_ready() { # net_ready <A|B> <how many ready lines by now>: prints its xfrm_user
    wait_for "$WORK/tags-net$1.log" "^imslab net: ready .*ipsec=$BACKEND " "$2" 60 \
        && grep '^imslab net: ready' "$WORK/tags-net$1.log" | tail -n 1 \
            | sed -n 's/.* xfrm_user=\([0-9]*\) .*/\1/p'
}
ue_start() { # ue_start <name> <local ip> <pcscf ip> <subscriber> <then>
    # shellcheck disable=SC2046 # the subscriber's arguments are meant to split
    $IP netns exec "$TU" "$IMSLAB" ue register --ipsec "$BACKEND" --pcscf "$3:5060" \
        --local-ip "$2" $("$IMSLAB" net subscribers --index "$4" --ue-args) --then "$5" \
        >"$WORK/tags-$1.log" 2>&1 &
    eval "$1_pid=$!"
    TAGS_PIDS="$TAGS_PIDS $!"
}
ue_uid() { sed -n 's/.*XFRM state tagged user 0x[0-9a-f]* (\([0-9]*\)).*/\1/p' "$WORK/tags-$1.log"; }
ue_registered() { wait_for "$WORK/tags-$1.log" "✔ registration done" 1 30; }

echo "REGTEST info xfrm-tags phase ($(elapsed)s)"
$IP netns del "$TC" 2>/dev/null
$IP netns del "$TU" 2>/dev/null
if $IP netns add "$TC" && $IP netns add "$TU" \
    && $IP link add tc0 netns "$TC" type veth peer name tu0 netns "$TU" \
    && $IP -n "$TC" link set lo up && $IP -n "$TU" link set lo up \
    && $IP -n "$TC" addr add 10.78.0.1/24 dev tc0 && $IP -n "$TC" addr add 10.78.0.3/24 dev tc0 \
    && $IP -n "$TU" addr add 10.78.0.2/24 dev tu0 && $IP -n "$TU" addr add 10.78.0.4/24 dev tu0 \
    && $IP -n "$TU" addr add 10.78.0.5/24 dev tu0 \
    && $IP -n "$TC" link set tc0 up && $IP -n "$TU" link set tu0 up; then ok=1; else ok=0; fi
tcheck "$ok" tags-namespaces "core=$TC (10.78.0.1, .3) ue=$TU (10.78.0.2, .4, .5)"

# --- two P-CSCFs in one namespace, two UE processes in another
net_start A 10.78.0.1 3870
net_start B 10.78.0.3 3871
uA="$(net_ready A 1)"
uB="$(net_ready B 1)"
tcheck "$([ -n "$uA" ] && [ -n "$uB" ] && [ "$uA" != "$uB" ] && echo 1 || echo 0)" \
    tags-pcscfs-ready "pcscfA_uid=$uA pcscfB_uid=$uB"
ue_start ueA 10.78.0.2 10.78.0.1 0 pause:120000
ue_start ueB 10.78.0.4 10.78.0.3 0 pause:120000
ue_registered ueA && ue_registered ueB && ok=1 || ok=0
ua="$(ue_uid ueA)"
ub="$(ue_uid ueB)"
[ -n "$ua" ] && [ -n "$ub" ] && [ "$ua" != "$ub" ] && [ "$ua" != "$uA" ] && [ "$ua" != "$uB" ] || ok=0
tcheck "$ok" tags-ues-registered "ueA_uid=$ua ueB_uid=$ub"

# Each of the four holds exactly one SA set: four SAs and four policies under its own tag.
snap pcscfA "$TC" "$uA"; sas_A="$snap_sas"; pols_A="$snap_pols"; d="$snap_d"
snap pcscfB "$TC" "$uB"; d="$d $snap_d"
snap ueA "$TU" "$ua"; sas_a="$snap_sas"; pols_a="$snap_pols"; d="$d $snap_d"
snap ueB "$TU" "$ub"; sas_b="$snap_sas"; pols_b="$snap_pols"; d="$d $snap_d"
tcheck "$([ "$d" = "pcscfA=4/4 pcscfB=4/4 ueA=4/4 ueB=4/4" ] && echo 1 || echo 0)" \
    tags-state-by-instance "$d"

# --- UE crash: its state stays behind; the other UE's is untouched.
kill -9 "$ueA_pid"
wait "$ueA_pid" 2>/dev/null
snap ueA "$TU" "$ua"; d="$snap_d"
ok=1
[ "$d" = "ueA=4/4" ] && [ "$snap_sas" = "$sas_a" ] || ok=0
[ "$(tag_spis "$TU" state "$ub")" = "$sas_b" ] && [ "$(tag_spis "$TU" policy "$ub")" = "$pols_b" ] || ok=0
tcheck "$ok" tags-ue-crash-leftovers "$d ueB unchanged"

# --- UE restart (same address, same tag): flushes its own leftovers, then registers anew;
# the other UE's SAs and policies are exactly as they were.
mv "$WORK/tags-ueA.log" "$WORK/tags-ueA-crashed.log"
ue_start ueA 10.78.0.2 10.78.0.1 0 pause:120000
ue_registered ueA && ok=1 || ok=0
[ "$(ue_uid ueA)" = "$ua" ] || ok=0
snap ueA "$TU" "$ua"; d="$snap_d"
[ "$d" = "ueA=4/4" ] || ok=0
disjoint "$sas_a" "$snap_sas" && disjoint "$pols_a" "$snap_pols" || ok=0
sas_a="$snap_sas"; pols_a="$snap_pols"
[ "$(tag_spis "$TU" state "$ub")" = "$sas_b" ] && [ "$(tag_spis "$TU" policy "$ub")" = "$pols_b" ] || ok=0
tcheck "$ok" tags-ue-restart "$d (none of the old SPIs) ueB unchanged"

# --- a third UE process starts, registers, deregisters and stops cleanly beside them.
ue_start ueC 10.78.0.5 10.78.0.3 1 deregister
wait "$ueC_pid"
rc=$?
uc="$(ue_uid ueC)"
ok=1
[ "$rc" = 0 ] && [ -n "$uc" ] && grep -q '^deregistered in' "$WORK/tags-ueC.log" || ok=0
snap ueC "$TU" "$uc"; d="$snap_d"
[ "$d" = "ueC=0/0" ] || ok=0
for u in a b; do
    eval "want_s=\$sas_$u; want_p=\$pols_$u; uid=\$u$u"
    [ "$(tag_spis "$TU" state "$uid")" = "$want_s" ] && [ "$(tag_spis "$TU" policy "$uid")" = "$want_p" ] || ok=0
done
tcheck "$ok" tags-ue-stop "rc=$rc ueC_uid=$uc $d ueA, ueB unchanged"
# P-CSCF A now holds ueA's new set (the crashed UE's old one retires after its grace).
settle "$TC" "$uA" 4
sas_A="$(tag_spis "$TC" state "$uA")"; pols_A="$(tag_spis "$TC" policy "$uA")"
sas_B="$(tag_spis "$TC" state "$uB")"; pols_B="$(tag_spis "$TC" policy "$uB")"

# --- P-CSCF B stops cleanly while both hold live SAs: B's go, A's stay exactly.
kill -TERM "$netB_pid"
wait "$netB_pid"
rc=$?
ok=1
[ "$rc" = 0 ] && grep -q '^imslab net: stopped on SIGTERM' "$WORK/tags-netB.log" || ok=0
snap pcscfB "$TC" "$uB"; d="$snap_d"
[ "$d" = "pcscfB=0/0" ] || ok=0
[ "$(tag_spis "$TC" state "$uA")" = "$sas_A" ] && [ "$(tag_spis "$TC" policy "$uA")" = "$pols_A" ] \
    && [ -n "$sas_A" ] || ok=0
tcheck "$ok" tags-pcscf-stop "rc=$rc $d pcscfA unchanged ($(count "$sas_A") SAs)"

# --- P-CSCF B starts again (its start flushes by its tag): A's stay exactly.
net_start B 10.78.0.3 3871
u="$(net_ready B 2)"
ok=1
[ "$u" = "$uB" ] || ok=0
[ "$(tag_spis "$TC" state "$uA")" = "$sas_A" ] && [ "$(tag_spis "$TC" policy "$uA")" = "$pols_A" ] || ok=0
tcheck "$ok" tags-pcscf-start "pcscfB_uid=$u pcscfA unchanged"

# --- P-CSCF A crashes: its state stays behind. Restarted, it flushes exactly its own.
kill -9 "$netA_pid"
wait "$netA_pid" 2>/dev/null
snap pcscfA "$TC" "$uA"; d="$snap_d"
ok=1
[ "$snap_sas" = "$sas_A" ] && [ "$snap_pols" = "$pols_A" ] || ok=0
tcheck "$ok" tags-pcscf-crash-leftovers "$d"
net_start A 10.78.0.1 3870
u="$(net_ready A 2)"
snap pcscfA "$TC" "$uA"; d="$snap_d"
tcheck "$([ "$u" = "$uA" ] && [ "$d" = "pcscfA=0/0" ] && echo 1 || echo 0)" \
    tags-pcscf-restart "pcscfA_uid=$u $d after its restart"

# --- the end: UEs killed (their leftovers die with the namespace), both P-CSCFs stop cleanly
kill -9 "$ueA_pid" "$ueB_pid" 2>/dev/null
kill -TERM "$netA_pid" "$netB_pid"
wait "$netA_pid"
ra=$?
wait "$netB_pid"
rb=$?
TAGS_PIDS=""
st="$($IP netns exec "$TC" $IP xfrm state | grep -c '^src ')"
po="$($IP netns exec "$TC" $IP xfrm policy | grep -c '^src ')"
tcheck "$([ "$ra" = 0 ] && [ "$rb" = 0 ] && [ "$st" = 0 ] && [ "$po" = 0 ] && echo 1 || echo 0)" \
    tags-nothing-left "rc=$ra,$rb core states=$st policies=$po"
$IP netns del "$TC" 2>/dev/null
$IP netns del "$TU" 2>/dev/null
echo "REGTEST info xfrm-tags phase done ($(elapsed)s)"
