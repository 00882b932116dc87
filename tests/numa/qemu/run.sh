#!/bin/sh
# Runs the NUMA tests for real in a qemu guest with two NUMA nodes (one CPU
# and 2 GiB each; QEMU_NODE_MIB changes the memory): the kernel really has node 1, so regions bound to it
# show "prefer:1" and their pages land there (N1= in numa_maps), and hwloc
# discovers the topology from sysfs without any HWLOC_* variable.
# Not part of ctest: it boots a VM under emulation (a minute or two).
#
#   tests/numa/qemu/run.sh BUILD_DIR [KERNEL]
#
# Needs: qemu-system-x86, busybox-static, libhwloc15 (apt-get install
# qemu-system-x86 busybox-static), a Debian kernel image (apt-get install
# linux-image-amd64 gives /boot/vmlinuz-*; or pass one), and BUILD_DIR
# built (cmake --build BUILD_DIR). The initramfs holds busybox, the test
# binaries and every library they (and hwloc, which they dlopen) need, at
# their host paths. Exit status 0 when every test in the guest passed.
set -eu
build=$(cd "${1:?usage: $0 BUILD_DIR [KERNEL]}" && pwd)
kernel=${2:-$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)}
[ -f "$kernel" ] || { echo "no kernel image: apt-get install linux-image-amd64, or pass one"; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root

# The tests run in the guest, in this order (stress: the real topology).
tests="
$build/tests/numa/test_numa_os
$build/tests/numa/test_numa_arenas
$build/tests/numa/test_numa_binding
$build/tests/numa/test_numa_bind
$build/tests/numa/test_numa_stress_fake4_api
$build/tests/stress/test_stress_api
"
hwloc=$(ldconfig -p | awk '/libhwloc\.so\.15 / {print $NF; exit}')
[ -n "$hwloc" ] || { echo "libhwloc.so.15 not found: apt-get install libhwloc15"; exit 2; }

# Copies files to the same path under the root.
put() {
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
  done
}
# A binary and every library ldd finds for it.
put_with_libs() {
  put "$1"
  ldd "$1" | awk '/=> \// {print $3} /^\t\/[^ ]*ld-linux/ {print $1}' | while read -r lib; do
    put "$lib"
  done
}

mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
cp "$(command -v busybox)" "$root/bin/busybox"
for t in $tests; do
  [ -x "$t" ] || { echo "missing $t: build $build first"; exit 2; }
  put_with_libs "$t"
done
put_with_libs "$hwloc"
put_with_libs "$build/tests/numa/libnuma_fake_hwloc.so"
sed "s|@TESTS@|$(echo $tests)|" "$here/init.sh" > "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"

# TCG by default: on this (itself virtual) machine, KVM guests hang before
# the kernel prints anything, and -cpu host/max fail on an MSR. Try KVM with
# QEMU_ACCEL="-accel kvm -cpu host,-arch-capabilities" where it works.
accel=${QEMU_ACCEL:--accel tcg -cpu max}
echo "booting $kernel ($accel), initramfs $(du -h "$work/initramfs.gz" | cut -f1)"
# -numa node,mem= is refused by current machine types: memory backends.
# 2 GiB a node: the stress test alone peaks at about 1 GiB resident.
node_mib=${QEMU_NODE_MIB:-2048}
timeout 1200 qemu-system-x86_64 $accel -smp 2 -m $((2 * node_mib))M \
  -object memory-backend-ram,id=m0,size=${node_mib}M \
  -object memory-backend-ram,id=m1,size=${node_mib}M \
  -numa node,nodeid=0,cpus=0,memdev=m0 -numa node,nodeid=1,cpus=1,memdev=m1 \
  -kernel "$kernel" -initrd "$work/initramfs.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3" \
  -nographic -no-reboot </dev/null | tr -d '\r' | tee "$work/log"
passed=$(grep -c '^QEMU-RESULT .* 0$' "$work/log" || true)
ran=$(grep -c '^QEMU-RESULT ' "$work/log" || true)
expected=$(echo $tests | wc -w)
echo "guest: $passed of $expected tests passed ($ran ran)"
echo "$passed passed, $((expected - passed)) failed"
[ "$passed" -eq "$expected" ]
