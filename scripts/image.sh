#!/usr/bin/env bash
# The container image without any container registry (`make image`, `make image-test`):
#   1. a Debian 12 base built by debootstrap from Debian's packages (python3, venv, ffmpeg, tini), `podman import`;
#   2. wheels of requirements.txt built here with pip, so `podman build` (deploy/Dockerfile) needs no network;
#   3. test: the image runs as "web" and as "media" against this machine's PostgreSQL and Redis (host network),
#      then /healthz, a static file, a join and a stream published and played through them with the Python SDK.
#
#   scripts/image.sh build      # REBUILD_BASE=1 to redo the debootstrap base
#   scripts/image.sh test       # needs DATABASE_URL (PostgreSQL server; a throwaway database is made) and REDIS_URL
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${IMAGE_WORK:-/var/tmp/rooms-image}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE="localhost/rooms-base:bookworm"
IMAGE="${IMAGE:-localhost/rooms:latest}"
PY="${PY:-$ROOT/.venv/bin/python}"
# How this sandbox lets podman run containers (crun rejects its hybrid cgroups; rlimits may only be lowered).
RUN_OPTS="${PODMAN_RUN_OPTS:---runtime runc --ulimit nofile=8192:20000 --ulimit nproc=4096:4096}"

log() { printf '%s image: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

need_tools() {
  local missing=()
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  # Debian's podman brings crun only; the runs below use runc (RUN_OPTS).
  if [[ "$RUN_OPTS" == *"--runtime runc"* ]]; then
    command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (Debian)"
    if [ "$(id -u)" != "0" ]; then SUDO=sudo; else SUDO=; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

build_base() {
  if podman image exists "$BASE" && [ -z "${REBUILD_BASE:-}" ]; then
    log "base $BASE exists (REBUILD_BASE=1 to rebuild)"
    return
  fi
  local started=$SECONDS rootfs="$WORK/rootfs"
  rm -rf "$rootfs" && mkdir -p "$WORK"
  log "debootstrap bookworm into $rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,ffmpeg,tini \
    bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/*
  tar -C "$rootfs" -c . | podman import --message "debootstrap bookworm minbase" - "$BASE" >/dev/null
  rm -rf "$rootfs"
  log "base built in $((SECONDS - started)) s"
}

build_image() {
  local started=$SECONDS context="$WORK/context"
  rm -rf "$context" && mkdir -p "$context/deploy"
  log "wheels of requirements.txt"
  "$PY" -m pip wheel -q -r "$ROOT/requirements.txt" -w "$context/wheels" 2>&1 | { grep -v "^WARNING: Location" || true; }
  # Debian 12's Python is 3.11.2: redis needs async-timeout below 3.11.3, which this interpreter skipped.
  "$PY" -m pip wheel -q "async-timeout>=4.0.3" -w "$context/wheels" 2>&1 | { grep -v "^WARNING: Location" || true; }
  cp "$ROOT/requirements.txt" "$ROOT/manage.py" "$context/"
  cp -r "$ROOT/conference" "$ROOT/rooms" "$ROOT/media_relay" "$ROOT/roomapi" "$ROOT/templates" "$context/"
  cp "$ROOT/deploy/entrypoint.sh" "$context/deploy/"
  find "$context" -name __pycache__ -prune -exec rm -rf {} +
  log "podman build $IMAGE"
  podman build --pull=never --isolation="${IMAGE_ISOLATION:-chroot}" -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$context" >"$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log"; exit 1; }
  rm -rf "$context"
  log "image built in $((SECONDS - started)) s; size $(podman image inspect "$IMAGE" --format '{{.Size}}' \
    | awk '{printf "%.0f MB", $1 / 1e6}') (base $(podman image inspect "$BASE" --format '{{.Size}}' \
    | awk '{printf "%.0f MB", $1 / 1e6}'))"
}

test_image() {
  : "${DATABASE_URL:?image-test needs DATABASE_URL (a PostgreSQL server)}"
  : "${REDIS_URL:?image-test needs REDIS_URL}"
  local port
  db="rooms_image_$$" container="" media="" server=""  # globals: the EXIT trap runs after this function returns
  server="${DATABASE_URL%/*}"
  port="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$PY" - "$server/postgres" "$db" create <<'EOF'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(f'{"CREATE" if sys.argv[3] == "create" else "DROP"} DATABASE "{sys.argv[2]}"')
EOF
  cleanup() {
    for c in $container $media; do
      podman logs "$c" 2>&1 | tail -10 || true
      podman stop -t 10 "$c" >/dev/null 2>&1 || true
    done
    "$PY" - "$server/postgres" "$db" drop <<'EOF' || true
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{sys.argv[2]}" WITH (FORCE)')
EOF
  }
  trap cleanup EXIT
  local settings=(-e DATABASE_URL="$server/$db" -e REDIS_URL="$REDIS_URL" -e SECRET_KEY=image-test
    -e ALLOWED_HOSTS=127.0.0.1,localhost -e MEDIA_MODE=workers -e LOG_LEVEL=WARNING -e SECURE_SSL_REDIRECT=false)
  # shellcheck disable=SC2086
  container="$(podman run -d --rm --network=host $RUN_OPTS "${settings[@]}" -e PORT="$port" "$IMAGE" web)"
  # shellcheck disable=SC2086
  media="$(podman run -d --rm --network=host $RUN_OPTS "${settings[@]}" "$IMAGE" media --worker-id "image-$$")"
  log "containers ${container:0:12} (web on 127.0.0.1:$port) and ${media:0:12} (media)"
  (cd "$ROOT" && "$PY" - "$port" <<'EOF')
import asyncio, re, sys, time, urllib.request

import roomapi

port = sys.argv[1]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 120
while True:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
            print("healthz", r.status, r.read().decode())
            break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("no /healthz within 120 s")
        time.sleep(0.5)
page = urllib.request.urlopen(base + "/conference/", timeout=10).read().decode()
script = re.search(r'src="(/static/rooms/conference\.[0-9a-f]{12}\.js)"', page)
assert script, "the page does not link a hashed script"
with urllib.request.urlopen(base + script[1], timeout=10) as r:
    print("static", script[1], r.status)


async def join() -> None:
    alice = await roomapi.connect(f"ws://127.0.0.1:{port}", "alice")
    bob = await roomapi.connect(f"ws://127.0.0.1:{port}", "bob")
    room = await alice.join("image-test")
    other = await bob.join("image-test")
    await other.send_message("hello from the image test")
    got = await room.wait_for(roomapi.ROOM_EVENT.MESSAGE, timeout=20)
    print("join", [p.login for p in other.get_participants()], "message", got.message.text)
    from aiortc.mediastreams import VideoStreamTrack
    published = await room.publish(video=VideoStreamTrack())
    await published.wait_for(roomapi.STREAM_STATUS.PUBLISHING, timeout=30)
    event = await other.wait_for(roomapi.ROOM_EVENT.PUBLISHED, timeout=20)
    playing = await event.stream.play()
    frame = await asyncio.wait_for(playing.video.recv(), 30)
    print("media through the media container: frame", frame.width, "x", frame.height)
    await alice.disconnect()
    await bob.disconnect()

asyncio.run(join())
EOF
  log "image test passed"
}

need_tools
case "${1:-build}" in
  build) build_base; build_image ;;
  test) test_image ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
