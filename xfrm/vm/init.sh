#!/bin/busybox sh
/bin/busybox --install -s /bin; ln -s /bin/modprobe /sbin/modprobe
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t tmpfs tmp /run; mkdir -p /run/netns /var; ln -s /run /var/run
for m in jitterentropy_rng sha3_generic sha512_generic drbg xfrm_user esp4 esp6 veth authenc echainiv des_generic des3_ede crypto_null md5 sha1_generic cbc ecb; do modprobe $m 2>/dev/null; done
IP=/usr/sbin/ip
$IP link set lo up
$IP netns add p; $IP netns add u
$IP link add vp netns p type veth peer name vu netns u
$IP -n p addr add 10.9.0.1/24 dev vp; $IP -n u addr add 10.9.0.2/24 dev vu
$IP -n p addr add fd09::1/64 dev vp nodad; $IP -n u addr add fd09::2/64 dev vu nodad
for n in p u; do $IP -n $n link set lo up; done; $IP -n p link set vp up; $IP -n u link set vu up
sleep 1
run() { # name pcscf-backend ue-backend ue pcscf extra...
  name=$1; pb=$2; ub=$3; ue=$4; pc=$5; shift 5
  $IP netns exec p /sa_echo --role pcscf --backend $pb --ue $ue --pcscf $pc --count 5 --timeout-secs 15 "$@" > /tmp/p.out 2>&1 &
  sleep 0.3
  $IP netns exec u /sa_echo --role ue --backend $ub --ue $ue --pcscf $pc --count 5 --timeout-secs 15 "$@" > /tmp/u.out 2>&1
  wait
  echo "VMCASE $name :: P: $(tail -1 /tmp/p.out) :: U: $(tail -1 /tmp/u.out)"
  grep -v RESULT /tmp/p.out /tmp/u.out | head -3
}
run k-k-sha1-aes kernel kernel 10.9.0.2 10.9.0.1 --alg hmac-sha-1-96 --ealg aes-cbc
run k-k-md5-3des kernel kernel 10.9.0.2 10.9.0.1 --alg hmac-md5-96 --ealg des-ede3-cbc
run k-k-sha1-null kernel kernel 10.9.0.2 10.9.0.1 --alg hmac-sha-1-96 --ealg null
run k-k-v6-aes kernel kernel fd09::2 fd09::1 --alg hmac-md5-96 --ealg aes-cbc
run k-k-tcp kernel kernel 10.9.0.2 10.9.0.1 --alg hmac-sha-1-96 --ealg aes-cbc --tcp
run k-k-v6-tcp kernel kernel fd09::2 fd09::1 --alg hmac-sha-1-96 --ealg des-ede3-cbc --tcp
run u-k-aes userspace kernel 10.9.0.2 10.9.0.1 --alg hmac-sha-1-96 --ealg aes-cbc
run k-u-3des kernel userspace 10.9.0.2 10.9.0.1 --alg hmac-md5-96 --ealg des-ede3-cbc
run u-k-v6-null userspace kernel fd09::2 fd09::1 --alg hmac-md5-96 --ealg null
run k-u-v6-aes kernel userspace fd09::2 fd09::1 --alg hmac-sha-1-96 --ealg aes-cbc
run auto-auto auto auto 10.9.0.2 10.9.0.1
echo VMDONE
poweroff -f
