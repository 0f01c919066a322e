#!/bin/sh
# The `make demo` walk-through: the CLI starts berthd if none answers, imports the
# busybox example image, runs a command in it, builds the example Dockerfile and
# runs the built image.
set -eu
cd "$(dirname "$0")/.."
berth version
berth import --change 'CMD ["sh"]' examples/busybox/rootfs.tar busybox:latest
berth images
berth image inspect --format '{{.Id}} {{json .Config.Cmd}}' busybox:latest
berth run --rm busybox:latest echo "hello from a berth container"
berth build -t berth-example:latest examples/busybox
berth run --rm berth-example:latest sh -c 'echo "built image runs: $(uname -s) $(hostname)"'
