#!/bin/sh
# The `make demo` walk-through: the CLI starts berthd if none answers, imports the
# busybox example image, lists it and runs a command in it.
set -eu
cd "$(dirname "$0")/.."
berth version
berth import --change 'CMD ["sh"]' examples/busybox/rootfs.tar busybox:latest
berth images
berth image inspect --format '{{.Id}} {{json .Config.Cmd}}' busybox:latest
if berth run --help >/dev/null 2>&1; then
    berth run --rm busybox:latest echo "hello from a berth container"
fi
