#!/bin/busybox sh
# /init of the qemu guest (tests/numa/qemu/run.sh fills in @TESTS@): shows
# the topology, runs each test with a bound, prints "QEMU-RESULT name status"
# and powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
# /tmp stays the initramfs's own: the binaries live under their host paths, often /tmp.
echo "guest: nodes online $(cat /sys/devices/system/node/online)," \
  "node0 cpus $(cat /sys/devices/system/node/node0/cpulist)," \
  "node1 cpus $(cat /sys/devices/system/node/node1/cpulist), $(nproc) CPUs"
for t in @TESTS@; do
  echo "=== $t"
  case $t in
    */test_stress_api) env HMALLOC_STATS=1 timeout 300 "$t" 2>&1 ;;
    */test_numa_stress_fake4_api) env HWLOC_SYNTHETIC="node:4 pu:1" timeout 300 "$t" 2>&1 ;;
    *) timeout 300 "$t" 2>&1 ;;
  esac
  echo "QEMU-RESULT $t $?"
done
poweroff -f
