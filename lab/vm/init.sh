#!/bin/busybox sh
# /init of the lab VM (template: run.sh substitutes @NONCE@, @MODULES@ and @SCRIPT@).
#
# Mounts the pseudo filesystems, loads the kernel modules in order, runs the payload script,
# sends back the files it left in /out (base64 between markers on the serial console), prints
# one result line carrying this run's nonce, and powers off. Only the result line decides
# PASS/FAIL: qemu itself exits 0 either way.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox mount -t tmpfs tmpfs /tmp
/bin/busybox mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm /run/netns /var /out
ln -sf /run /var/run
NONCE=@NONCE@
echo "IMSLAB-VM-BOOT $NONCE uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"

# The kernel's crypto API asks /sbin/modprobe for algorithms on demand; preloading keeps the
# order explicit (the DRBG must exist before ESP's IV generator can be instantiated).
modfail=""
kdir=/lib/modules/$(uname -r)
# shellcheck disable=SC2043 # the placeholder becomes the module list
for m in @MODULES@; do
    # Built into this kernel: nothing to load.
    grep -q "/$m\.ko" "$kdir/modules.builtin" 2>/dev/null && continue
    modprobe "$m" 2>/tmp/modprobe.err || modfail="$modfail $m($(head -c 120 /tmp/modprobe.err))"
done
[ -n "$modfail" ] && echo "IMSLAB-VM-MODULES $NONCE failed:$modfail"
echo "IMSLAB-VM-READY $NONCE uptime=$(cut -d' ' -f1 /proc/uptime)"

/bin/busybox ip link set lo up 2>/dev/null
cd /payload || poweroff -f
sh /payload/@SCRIPT@
rc=$?
sync

for f in /out/*; do
    [ -f "$f" ] || continue
    name=$(basename "$f")
    echo "IMSLAB-VM-FILE-BEGIN $NONCE $name"
    base64 "$f"
    echo "IMSLAB-VM-FILE-END $NONCE $name"
done

up=$(cut -d' ' -f1 /proc/uptime)
if [ "$rc" -eq 0 ]; then
    echo "IMSLAB-VM-RESULT $NONCE PASS rc=0 uptime=$up"
else
    echo "IMSLAB-VM-RESULT $NONCE FAIL rc=$rc uptime=$up"
fi
poweroff -f
