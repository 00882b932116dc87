#!/bin/sh
# libhmalloc.so must not need libhwloc: a one-node machine must not even
# load it (src/topology.c dlopens it on a helper thread when it is needed).
lib=$1
needed=$(readelf -d "$lib") || { echo "FAIL: readelf -d $lib"; exit 1; }
if echo "$needed" | grep -i hwloc; then
  echo "FAIL: $lib has a DT_NEEDED entry for hwloc"
  exit 1
fi
if ! echo "$needed" | grep -q 'NEEDED.*libc\.so'; then
  echo "FAIL: no DT_NEEDED entries read from $lib"
  exit 1
fi
echo "1 passed, 0 failed"
