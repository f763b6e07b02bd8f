#!/usr/bin/env bash
# Install the Debian packages the tests, benchmarks and `make run-cluster` need, if missing.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v janus >/dev/null 2>&1 || need+=(janus)
# The npm package of the Web SDK (tests/test_sdk_packages.py: tsc from the npm registry).
command -v npm >/dev/null 2>&1 || need+=(npm)
# The front of the production stack (make run-cluster, tests/test_deploy.py).
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# Pages show chat in any script: CJK and emoji glyphs for the browser tests' screenshots.
dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || need+=(fonts-wqy-microhei)
dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || need+=(fonts-noto-color-emoji)
# Real networks (issue 12): coturn for the TURN tests, nftables for the loss tests in network namespaces.
command -v turnserver >/dev/null 2>&1 || need+=(coturn)
command -v nft >/dev/null 2>&1 || need+=(nftables)
# The forward path's native half (scripts/build_fastpath.py, run by the venv rule): a C compiler, Python's headers.
command -v gcc >/dev/null 2>&1 || need+=(gcc)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
    2>/dev/null || need+=(python3-dev)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != "0" ]; then SUDO=sudo; else SUDO=; fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${need[@]}" >/dev/null
