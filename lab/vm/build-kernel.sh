#!/usr/bin/env bash
# Fetches Debian's packaged kernel (the one `linux-image-amd64` depends on) and prepares what
# the lab VM boots: an uncompressed ELF vmlinux (boots faster under TCG than the bzImage) and
# the module subset needed for kernel IPsec (ESP, XFRM, crypto, veth) with its modules.dep.
#
# Nothing is installed on the host and nothing here is committed: all of it is rebuilt from
# Debian's archive into $VM_CACHE (default: <repo>/target/vm-cache). Idempotent: a second run
# only prints the paths.
#
# Output (stdout, last lines, also written to $VM_CACHE/kernel.env):
#   VM_KVER=<version>  VM_KERNEL=<path to vmlinux or bzImage>  VM_MODULES=<root with lib/modules>
#
# Needs: apt-get, dpkg-deb, xz, flock, busybox (for depmod: the host may lack kmod).
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${VM_CACHE:-$repo/target/vm-cache}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

log() { echo "build-kernel: $*" >&2; }
die() { echo "build-kernel: ERROR: $*" >&2; exit 1; }

for t in apt-get apt-cache dpkg-deb xz busybox flock; do
    command -v "$t" >/dev/null || die "missing host tool: $t"
done

# Concurrent runs (tests in parallel) share the cache: one prepares it, the others wait.
exec 9>"$cache/.lock"
flock 9

# Which kernel package: the dependency of the linux-image-amd64 metapackage, unless pinned.
pkg="${VM_KERNEL_PKG:-}"
if [ -z "$pkg" ]; then
    pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    if [ -z "$pkg" ]; then
        log "apt lists missing or stale; running apt-get update"
        apt-get update -qq >&2 || die "apt-get update failed"
        pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    fi
fi
[ -n "$pkg" ] || die "cannot find the kernel package behind linux-image-amd64"
kver="${pkg#linux-image-}"
out="$cache/$kver"
done_mark="$out/.done"

if [ ! -f "$done_mark" ]; then
    rm -rf "$out"
    mkdir -p "$out/deb" "$out/x"
    # apt's download user must be able to write here, or apt warns and downloads as root.
    chmod 0777 "$out/deb"
    log "downloading $pkg"
    # apt-get download writes into the current directory; _apt cannot write there as root's
    # cache dir, which only yields a harmless warning.
    if ! (cd "$out/deb" && apt-get download -q "$pkg" >&2); then
        # Stale lists can name a version the archive no longer has: refresh once and retry.
        log "download failed; running apt-get update and retrying"
        apt-get update -qq >&2 || true
        (cd "$out/deb" && apt-get download -q "$pkg" >&2) || die "apt-get download $pkg failed"
    fi
    deb="$(find "$out/deb" -name '*.deb' | head -n1)"
    log "extracting $(basename "$deb") (not installing it)"
    dpkg-deb -x "$deb" "$out/x"

    vmlinuz="$out/x/boot/vmlinuz-$kver"
    [ -f "$vmlinuz" ] || die "no $vmlinuz in the package"

    # The bzImage carries the kernel as an xz stream; the raw ELF inside boots without the
    # decompressor, which under TCG saves seconds per boot.
    kernel="$vmlinuz"
    off="$(grep -abo -m1 -P '\xfd\x37\x7a\x58\x5a\x00' "$vmlinuz" 2>/dev/null | head -n1 | cut -d: -f1 || true)"
    if [ -n "$off" ]; then
        # xz stops reading at the end of the stream, so tail may die of SIGPIPE: no pipefail.
        if (set +o pipefail; tail -c +"$((off + 1))" "$vmlinuz" | xz -dc --single-stream >"$out/vmlinux.tmp" 2>/dev/null) \
            && [ "$(head -c 4 "$out/vmlinux.tmp" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]; then
            mv "$out/vmlinux.tmp" "$out/vmlinux"
            kernel="$out/vmlinux"
            log "extracted ELF vmlinux at xz offset $off"
        else
            rm -f "$out/vmlinux.tmp"
            log "xz payload did not give an ELF; falling back to the bzImage"
        fi
    else
        log "no xz magic in vmlinuz; falling back to the bzImage"
    fi
    [ "$kernel" = "$vmlinuz" ] && cp "$vmlinuz" "$out/bzImage" && kernel="$out/bzImage"

    # Module subset: whole directories where IPsec's pieces live, veth, and the transitive
    # dependencies of what the VM loads (from a depmod of the full tree).
    full="$out/x/lib/modules/$kver"
    log "depmod of the full module tree (for dependency closure)"
    busybox depmod -b "$out/x" "$kver"
    sub="$out/modules"
    subk="$sub/lib/modules/$kver"
    mkdir -p "$subk"
    want=()
    for d in kernel/crypto kernel/arch/x86/crypto kernel/lib/crypto kernel/net/xfrm kernel/net/key \
        kernel/net/ipv4 kernel/net/ipv6; do
        [ -d "$full/$d" ] && while IFS= read -r f; do want+=("${f#"$full"/}"); done \
            < <(find "$full/$d" -name '*.ko*' -type f)
    done
    want+=("$(cd "$full" && find kernel/drivers/net -maxdepth 1 -name 'veth.ko*' | head -n1)")
    # Closure over modules.dep ("path: dep dep ...").
    declare -A have=()
    queue=("${want[@]}")
    while [ "${#queue[@]}" -gt 0 ]; do
        m="${queue[0]}"
        queue=("${queue[@]:1}")
        [ -n "$m" ] || continue
        [ -n "${have[$m]:-}" ] && continue
        have[$m]=1
        deps="$(awk -F': *' -v m="$m" '$1 == m {print $2; exit}' "$full/modules.dep")"
        for dep in $deps; do queue+=("$dep"); done
    done
    for m in "${!have[@]}"; do
        mkdir -p "$subk/$(dirname "$m")"
        cp "$full/$m" "$subk/$m"
    done
    cp "$full"/modules.builtin* "$full"/modules.order "$subk/" 2>/dev/null || true
    busybox depmod -b "$sub" "$kver"
    log "module subset: ${#have[@]} modules, $(du -sh "$subk" | cut -f1)"

    for m in esp4 esp6 xfrm_user veth drbg jitterentropy_rng authenc echainiv des_generic; do
        grep -q "/$m\.ko" "$subk/modules.dep" || die "module $m missing from the subset"
    done
    rm -rf "$out/x/lib/modules" "$out/deb"
    printf 'VM_KVER=%s\nVM_KERNEL=%s\nVM_MODULES=%s\n' "$kver" "$kernel" "$sub" >"$out/kernel.env"
    touch "$done_mark"
fi

cp "$out/kernel.env" "$cache/kernel.env"
cat "$out/kernel.env"
