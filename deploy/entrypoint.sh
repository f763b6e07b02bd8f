#!/bin/sh
# The image's entry point: the first argument picks the role, the environment holds the settings (.env.example).
#   web     daphne on 0.0.0.0:${PORT:-8000} (migrates first unless MIGRATE=false); behind a proxy set
#           TRUSTED_PROXIES to its address or network (never --proxy-headers)
#   media   one media relay worker (manage.py runmedia); run one container per core
#   worker  the task worker (manage.py runtasks): webhook deliveries, room mixes; give each a fixed
#           --worker-id so a restarted one re-runs what it was running
#   anything else is run as a command (e.g. "python manage.py createsuperuser")
set -eu
cd /srv/rooms
PY=/srv/rooms/.venv/bin/python
role="${1:-web}"
[ "$#" -gt 0 ] && shift
case "$role" in
  web)
    if [ "${MIGRATE:-true}" != "false" ]; then "$PY" manage.py migrate --noinput -v0; fi
    exec /srv/rooms/.venv/bin/daphne -b 0.0.0.0 -p "${PORT:-8000}" \
      --websocket-max-message-size 2097152 --websocket-max-frame-size 2097152 "$@" conference.asgi:application
    ;;
  media)
    exec "$PY" manage.py runmedia "$@"
    ;;
  worker)
    exec "$PY" manage.py runtasks "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
