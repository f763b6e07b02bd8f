"""Settings for the conference server.

Every setting that an operator may change is read from an environment variable
of the same name; the README lists them with their defaults.  The embedded
defaults (SQLite, in-memory channel layer, in-process media) need no other
service, so `make run` works on a bare machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    """A string setting from the environment."""
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    """An integer setting from the environment."""
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    """A float setting from the environment."""
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_bool(name: str, default: bool) -> bool:
    """A boolean setting from the environment ("1", "true", "yes", "on" are true)."""
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated list setting from the environment."""
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# The public development key: refused when DEBUG is false (see "Production safety" below).
INSECURE_DEFAULT_SECRET_KEY = "dev-insecure-change-me-in-production"
SECRET_KEY = env_str("SECRET_KEY", INSECURE_DEFAULT_SECRET_KEY)
DEBUG = env_bool("DEBUG", True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "servestatic",
    "rooms",
    "media_relay",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files before everything else: compressed, cached, no session or CSRF work (see STATIC_MANIFEST).
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Recording downloads handed to nginx (RECORDINGS_ACCEL_REDIRECT); a no-op without it.
    "conference.accel.AccelRedirectMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "conference.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "conference.asgi.application"

# Database: DATABASE_URL (PostgreSQL in production and CI), SQLite by default.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # Seconds a worker thread keeps its connection (checked before reuse). 0 opens one per command,
        # which PostgreSQL pays for in CPU: production with PostgreSQL should set 60 (README).
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
# TEST_DB_NAME lets parallel test runs on one machine use separate databases.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that daphne processes started by tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / env_str("TEST_DB_NAME", "test_db.sqlite3"))}
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # BEGIN IMMEDIATE: writers queue on the busy timeout instead of failing with "database is locked"
    # when a background thread (webhook deliverer) writes while a transaction reads then writes.
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
elif os.environ.get("TEST_DB_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DB_NAME"]}

# Channel layer: REDIS_URL selects channels-redis; otherwise in-memory (one process).
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "conference.layers.ResilientRedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, which cuts
                # channels-redis's 5 s blocking receive: wait as long as Redis says.
                # It also caps a pool at 100 connections and then raises "Too many connections"
                # (observed under load: lost and duplicated deliveries); allow what a busy process needs.
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": None,
                        "max_connections": env_int("REDIS_MAX_CONNECTIONS", 2000),
                    }
                ],
                "capacity": 1000,
                "expiry": 30,
                "group_expiry": 86400,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 30},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `manage.py collectstatic` writes the files that servestatic (or nginx, deploy/nginx.conf) serves.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# True: serve the hashed, compressed (gzip, Brotli) files collectstatic wrote to STATIC_ROOT, cached for a year
# (production; run collectstatic first, as `make run` and deploy/ do). False: serve the apps' files as they are,
# re-read on every change (development and tests). Defaults to the opposite of DEBUG.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "conference.staticfiles.ManifestStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
SERVESTATIC_USE_MANIFEST = STATIC_MANIFEST
SERVESTATIC_USE_FINDERS = not STATIC_MANIFEST
SERVESTATIC_AUTOREFRESH = not STATIC_MANIFEST
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Conference Room API",
    "DESCRIPTION": "REST API for rooms, participants, streams, messages and recordings.",
    "VERSION": "1.0.0",
    # Swagger UI and ReDoc from drf-spectacular-sidecar's copies under STATIC_URL: the docs work with no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: Swagger UI would fetch it from validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # The WHIP/WHEP endpoints are plain async views: this hook lists them (docs/whip-whep.md).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "rooms.whip_schema.add_whip_whep"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"aioice": {"level": "WARNING"}, "aiortc": {"level": "WARNING"}},
}

# --- Room API -------------------------------------------------------------
# Seconds a room or a dropped participant is kept for a reconnect.
ROOM_IDLE_TIMEOUT = env_float("ROOM_IDLE_TIMEOUT", 60.0)
# Default participant limit of a new room; a creator may ask for another one.
ROOM_MAX_PARTICIPANTS = env_int("ROOM_MAX_PARTICIPANTS", 10)
# Upper bound for the per-room limit a creator may ask for.
ROOM_MAX_PARTICIPANTS_LIMIT = env_int("ROOM_MAX_PARTICIPANTS_LIMIT", 500)
# Largest message text in bytes (UTF-8).
MESSAGE_MAX_BYTES = env_int("MESSAGE_MAX_BYTES", 1024 * 1024)
# Big rooms: from this many present participants on (0 = never), joined/left/participant_updated events and audience
# count changes within ROOM_PRESENCE_BATCH_WINDOW seconds reach the room as one batched "presence" event.
ROOM_PRESENCE_BATCH_THRESHOLD = env_int("ROOM_PRESENCE_BATCH_THRESHOLD", 50)
ROOM_PRESENCE_BATCH_WINDOW = env_float("ROOM_PRESENCE_BATCH_WINDOW", 0.25)
# The server process's garbage collector (conference.gctune): freeze what is loaded at startup; collections slower
# than GC_SLOW_MS milliseconds are logged.
GC_FREEZE = env_bool("GC_FREEZE", True)
GC_SLOW_MS = env_float("GC_SLOW_MS", 20.0)
# How many recent messages a joiner receives.
ROOM_HISTORY_COUNT = env_int("ROOM_HISTORY_COUNT", 50)
# Largest WebSocket frame accepted; bigger frames are refused with an error.
WS_MAX_FRAME_BYTES = env_int("WS_MAX_FRAME_BYTES", MESSAGE_MAX_BYTES + 64 * 1024)
# Seconds between a connection's re-joins of its room group (recovery after a Redis restart).
WS_GROUP_REFRESH_SECONDS = env_float("WS_GROUP_REFRESH_SECONDS", 10.0)
# Flood control per WebSocket connection (token buckets; 0 = unlimited): every command, and chat messages on top.
# A command over budget gets error "rate_limited" and the connection stays up (docs/operations.md).
WS_RATE_COMMANDS_PER_SECOND = env_float("WS_RATE_COMMANDS_PER_SECOND", 50.0)
WS_RATE_COMMANDS_BURST = env_float("WS_RATE_COMMANDS_BURST", 200.0)
WS_RATE_MESSAGES_PER_SECOND = env_float("WS_RATE_MESSAGES_PER_SECOND", 10.0)
WS_RATE_MESSAGES_BURST = env_float("WS_RATE_MESSAGES_BURST", 50.0)
# Concurrent WebSocket connections per client IP (0 = no cap); over it: close code 4429. Counted in Redis when
# REDIS_URL is set (all daphne processes), per process otherwise. The IP is the real client's (TRUSTED_PROXIES).
WS_MAX_CONNECTIONS_PER_IP = env_int("WS_MAX_CONNECTIONS_PER_IP", 50)
# Seconds an open connection's place in that count lives without a heartbeat of its process (refreshed every
# third of it): a process that dies with connections open frees their places after at most this long.
WS_CONNECTION_COUNT_TTL = env_float("WS_CONNECTION_COUNT_TTL", 60.0)
# Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For is believed, read right to left;
# empty = trust nobody (loopback too). conference.client_address; docs/deployment.md.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", "")
# Addresses or networks never capped (the local reverse proxy, health checks, benchmarks on loopback).
WS_MAX_CONNECTIONS_EXEMPT = env_list("WS_MAX_CONNECTIONS_EXEMPT", "127.0.0.1,::1")
# /metrics (Prometheus): open to everyone when true; otherwise loopback and staff only, like /media/stats.
METRICS_PUBLIC = env_bool("METRICS_PUBLIC", False)

# --- Media relay ------------------------------------------------------------
# "inprocess": media runs in the daphne process; "workers": `manage.py runmedia`.
MEDIA_MODE = env_str("MEDIA_MODE", "inprocess")
# ICE servers as JSON: [{"urls": ["stun:host:3478"], "username": "", "credential": ""}]
MEDIA_ICE_SERVERS = env_str("MEDIA_ICE_SERVERS", "[]")
# UDP port range for media ("min-max"); empty means any ephemeral port.
MEDIA_UDP_PORTS = env_str("MEDIA_UDP_PORTS", "")
# Address to advertise in ICE candidates instead of the local one (NAT, Docker).
MEDIA_ADVERTISED_ADDRESS = env_str("MEDIA_ADVERTISED_ADDRESS", "")
# Seconds a peer connection may take to connect before it FAILS.
MEDIA_CONNECT_TIMEOUT = env_float("MEDIA_CONNECT_TIMEOUT", 20.0)
# Most a publisher may send per video track (bit/s), announced to it with REMB once a second.
MEDIA_PUBLISHER_MAX_BITRATE = env_int("MEDIA_PUBLISHER_MAX_BITRATE", 2_500_000)
# Minimum seconds between two keyframe requests forwarded to one publisher.
MEDIA_PLI_INTERVAL = env_float("MEDIA_PLI_INTERVAL", 0.5)
# Per-player downlink adaptation of simulcast layers (docs/protocol.md, "Simulcast and quality"); off: the
# wanted quality alone chooses the layer (tests that check layer choice on a loaded machine turn it off).
MEDIA_BANDWIDTH_ADAPTATION = env_bool("MEDIA_BANDWIDTH_ADAPTATION", True)

# --- Media caps (docs/security.md, "Media work per participant and per room"; 0 = no cap) --------------------
# Live publications (PENDING or PUBLISHING streams) per participant: camera + screen.
MEDIA_MAX_PUBLICATIONS_PER_PARTICIPANT = env_int("MEDIA_MAX_PUBLICATIONS_PER_PARTICIPANT", 2)
# Open plays per participant.
MEDIA_MAX_PLAYS_PER_PARTICIPANT = env_int("MEDIA_MAX_PLAYS_PER_PARTICIPANT", 100)
# Peer connections (publications and plays) not connected yet, per participant and per room: each holds relay
# ports and sends ICE checks until it connects or MEDIA_CONNECT_TIMEOUT ends it. Keep the room cap within
# the MEDIA_UDP_PORTS range.
MEDIA_MAX_PENDING_PER_PARTICIPANT = env_int("MEDIA_MAX_PENDING_PER_PARTICIPANT", 30)
MEDIA_MAX_PENDING_PER_ROOM = env_int("MEDIA_MAX_PENDING_PER_ROOM", 200)
# Distinct remote ICE candidates per offer, and per peer connection with its trickled ones.
MEDIA_MAX_CANDIDATES_PER_OFFER = env_int("MEDIA_MAX_CANDIDATES_PER_OFFER", 20)
# Remote candidates in private ranges (RFC 1918, ULA, CGNAT): on for LAN use; off on a public-only deployment.
# Loopback, link-local, multicast, unspecified and reserved addresses are always refused.
MEDIA_ALLOW_PRIVATE_CANDIDATES = env_bool("MEDIA_ALLOW_PRIVATE_CANDIDATES", True)
# Networks always accepted, before any refusal (e.g. "127.0.0.1/32" for a TURN server on this host in tests).
MEDIA_ALLOWED_CANDIDATE_NETWORKS = env_list("MEDIA_ALLOWED_CANDIDATE_NETWORKS", "")

# --- Recording --------------------------------------------------------------
RECORDINGS_DIR = Path(env_str("RECORDINGS_DIR", str(BASE_DIR / "recordings")))
# Behind nginx: the URL prefix of its internal location for RECORDINGS_DIR (deploy/rooms-locations.conf,
# "/_recordings/"). Downloads are then answered with X-Accel-Redirect and nginx sends the file; empty: daphne does.
RECORDINGS_ACCEL_REDIRECT = env_str("RECORDINGS_ACCEL_REDIRECT", "")
# The ffmpeg binary that writes per-stream files and mixes rooms.
RECORDING_FFMPEG = env_str("RECORDING_FFMPEG", "ffmpeg")
# Loopback UDP ports ("min-max") on which writer processes receive a stream's RTP. Keep it apart from
# MEDIA_UDP_PORTS (the range opened in the firewall, e.g. 40000-40100) and below the kernel's ephemeral range.
RECORDING_UDP_PORTS = tuple(int(x) for x in env_str("RECORDING_UDP_PORTS", "20000-29999").split("-", 1))
# Room mix (the reference's offline_mixer.json: hasVideo, hasAudio, mixerDisplayStreamName).
RECORDING_MIX_HAS_VIDEO = env_bool("RECORDING_MIX_HAS_VIDEO", True)
RECORDING_MIX_HAS_AUDIO = env_bool("RECORDING_MIX_HAS_AUDIO", True)
RECORDING_MIX_DISPLAY_STREAM_NAME = env_bool("RECORDING_MIX_DISPLAY_STREAM_NAME", True)
RECORDING_MIX_TILE_WIDTH = env_int("RECORDING_MIX_TILE_WIDTH", 320)
RECORDING_MIX_TILE_HEIGHT = env_int("RECORDING_MIX_TILE_HEIGHT", 240)
# Tiles per row; 0 = as square a grid as possible.
RECORDING_MIX_COLUMNS = env_int("RECORDING_MIX_COLUMNS", 0)
RECORDING_MIX_FPS = env_int("RECORDING_MIX_FPS", 15)
# A stream that stopped early: "freeze" on its last frame or go "black".
RECORDING_MIX_AFTER_END = env_str("RECORDING_MIX_AFTER_END", "freeze")
# Seconds the mix waits for per-stream files still being finalized.
RECORDING_MIX_WAIT_SECONDS = env_float("RECORDING_MIX_WAIT_SECONDS", 30.0)
# Caps on recording (issue 11; docs/security.md "Recording"). 0 = no cap. A cap reached stops that stream's
# recording (the file is closed and plays; the row says why); the call goes on.
RECORDING_MAX_SECONDS = env_float("RECORDING_MAX_SECONDS", 4 * 3600.0)
RECORDING_MAX_BYTES = env_int("RECORDING_MAX_BYTES", 2 * 1024**3)
# Free space the recordings disk keeps: no recording starts, and running ones stop, below it.
RECORDING_MIN_FREE_BYTES = env_int("RECORDING_MIN_FREE_BYTES", 1024**3)
# Days a recording (row and file) is kept; `manage.py cleanup` deletes older ones. 0 = keep forever.
RECORDING_RETENTION_DAYS = env_int("RECORDING_RETENTION_DAYS", 30)
# The font of the names drawn on the mix; the default (scripts/system-deps.sh installs it) covers CJK.
RECORDING_MIX_FONT = env_str("RECORDING_MIX_FONT", "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
# A mix is killed after RECORDING_MIX_TIMEOUT_BASE + RECORDING_MIX_TIMEOUT_FACTOR x its media seconds.
RECORDING_MIX_TIMEOUT_BASE = env_float("RECORDING_MIX_TIMEOUT_BASE", 60.0)
RECORDING_MIX_TIMEOUT_FACTOR = env_float("RECORDING_MIX_TIMEOUT_FACTOR", 10.0)

# --- Access -------------------------------------------------------------------
# Guests may join with just a login (the reference's behaviour); off = tokens only.
ROOMS_GUEST_MODE = env_bool("ROOMS_GUEST_MODE", True)

# --- Webhooks ------------------------------------------------------------------
# First retry delay in seconds; each further retry doubles it (exponential backoff).
WEBHOOK_RETRY_BASE_SECONDS = env_float("WEBHOOK_RETRY_BASE_SECONDS", 2.0)
# Attempts per delivery before it is marked failed (the next event of its room then goes out).
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8)
# Seconds to wait for a receiver's answer.
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0)

# --- Tokens, chat volume, retention (docs/security.md "Tokens", "Chat volume", "Other limits") -----------------
# Longest lifetime of a join token in seconds; a token asked for without one gets this (every token expires).
JOIN_TOKEN_MAX_TTL = env_int("JOIN_TOKEN_MAX_TTL", 7 * 24 * 3600)
# Most UTF-8 bytes of message text in a joiner's STATE history (besides ROOM_HISTORY_COUNT); older messages come
# page by page through the "history" command.
ROOM_HISTORY_MAX_BYTES = env_int("ROOM_HISTORY_MAX_BYTES", 256 * 1024)
# Most messages of one "history" page (a larger "limit" is refused with invalid_field).
ROOM_HISTORY_PAGE_LIMIT = env_int("ROOM_HISTORY_PAGE_LIMIT", 100)
# Byte budget of one WebSocket connection (token bucket on frame bytes; 0 = unlimited): a frame over it is refused
# with "rate_limited" and not handled. The burst must hold the largest frame (WS_MAX_FRAME_BYTES).
WS_RATE_MESSAGE_BYTES_PER_SECOND = env_float("WS_RATE_MESSAGE_BYTES_PER_SECOND", 256 * 1024)
WS_RATE_MESSAGE_BYTES_BURST = env_float("WS_RATE_MESSAGE_BYTES_BURST", 2 * WS_MAX_FRAME_BYTES)
# Days a chat message is kept (manage.py cleanup deletes older ones; 0 = forever).
MESSAGE_RETENTION_DAYS = env_int("MESSAGE_RETENTION_DAYS", 90)
# Days a finished (succeeded or failed) webhook delivery is kept (manage.py cleanup; 0 = forever).
WEBHOOK_RETENTION_DAYS = env_int("WEBHOOK_RETENTION_DAYS", 14)
# Days a finished background-task row (webhook round, mix) is kept; `manage.py cleanup` deletes older ones.
TASK_RETENTION_DAYS = env_int("TASK_RETENTION_DAYS", 7)
# Webhook deliveries sent at once by one sender (one per sequence key at a time, so per-room order is kept).
WEBHOOK_CONCURRENCY = env_int("WEBHOOK_CONCURRENCY", 8)

# --- Production safety (README "Production settings", docs/deployment.md) ------------------------------------
# With DEBUG off the server refuses to start on the public development key or an empty one: anyone could mint
# join tokens (any role, any room) and forge sessions with it.
if not DEBUG and SECRET_KEY in ("", INSECURE_DEFAULT_SECRET_KEY):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a long random value when DEBUG is false (it signs join tokens and sessions);"
        ' generate one with: python -c "import secrets; print(secrets.token_urlsafe(50))"'
    )
# HTTPS by default once DEBUG is off; each can be changed by the environment.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Plain-HTTP probes and scrapers on the local network are not redirected (paths without the leading slash).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$", r"^media/stats$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# "HEADER,value" (e.g. "HTTP_X_FORWARDED_PROTO,https") when a TLS-terminating proxy says so; it must then strip
# that header from clients. Empty: requests are secure only when daphne itself serves TLS.
_proxy_ssl_header = env_list("SECURE_PROXY_SSL_HEADER", "")
SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1]) if len(_proxy_ssl_header) == 2 else None
# Origins (scheme://host) trusted for CSRF over HTTPS, e.g. "https://rooms.example.org" (the admin behind a proxy).
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# --- ICE servers for clients (TURN REST credentials, rooms/turn.py) -------------------
# STUN URLs handed to every client, comma-separated ("stun:turn.example.com:3478").
ICE_STUN_URLS = env_list("ICE_STUN_URLS", "")
# TURN URLs handed to every client with credentials minted per session, comma-separated
# ("turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349?transport=tcp").
TURN_URLS = env_list("TURN_URLS", "")
# coturn's static-auth-secret (use-auth-secret): the credentials are an HMAC of it; no TURN without it.
TURN_SECRET = env_str("TURN_SECRET", "")
# Seconds a minted TURN credential stays valid (coturn refuses new allocations with it afterwards).
TURN_TTL = env_int("TURN_TTL", 6 * 3600)
# Seconds between the relay's NACKs for publisher packets still missing (media_relay/recovery.py); 0 = NACK once.
MEDIA_NACK_RETRY_SECONDS = env_float("MEDIA_NACK_RETRY_SECONDS", 0.05)

# --- Background tasks, logs and worker metrics (issue 14; docs/operations.md "Background tasks") ----------------
# Webhook deliveries and room mixes are tasks of Django's task framework (the django-tasks backport), stored in
# the database by django-tasks-db and run by `manage.py runtasks` (a separate process: supervisord's task-worker,
# `make run` starts one beside daphne). They survive a restart of any process.
INSTALLED_APPS += ["django_tasks", "django_tasks_db"]
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["webhooks", "mixes"],
    }
}
# Seconds between the task worker's looks at an empty queue.
TASK_WORKER_INTERVAL = env_float("TASK_WORKER_INTERVAL", 0.5)
# "text" (one readable line) or "json" (one JSON object a line with time, level, logger, message and the room,
# participant and request id when known: media_relay/logcontext.py).
LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING["formatters"] = {
    "plain": {"()": "media_relay.logcontext.TextFormatter"},
    "json": {"()": "media_relay.logcontext.JsonFormatter"},
}
LOGGING["handlers"] = {
    "console": {
        "class": "logging.StreamHandler",
        "formatter": "json" if LOG_FORMAT == "json" else "plain",
        "filters": ["context"],
    }
}
LOGGING["filters"] = {"context": {"()": "media_relay.logcontext.ContextFilter"}}
# Every HTTP request's log records carry its id (nginx's X-Request-ID, else a new one), echoed in the answer.
MIDDLEWARE.insert(1, "conference.request_id.RequestIdMiddleware")
# Seconds a media worker's published counters (Redis hash per worker) live without a refresh: /metrics drops a
# worker that stopped publishing after this.
MEDIA_METRICS_TTL = env_int("MEDIA_METRICS_TTL", 30)
# Seconds between a media worker's publications of its counters.
MEDIA_METRICS_INTERVAL = env_float("MEDIA_METRICS_INTERVAL", 5.0)
# Cascading (docs/architecture.md, "Cascading"): a play is placed on its stream's own media worker while that
# worker serves fewer than MEDIA_CASCADE_AFTER peer connections, else on the least-loaded live worker, which gets
# one copy of the stream over UDP from MEDIA_CASCADE_HOST (each worker's socket; port 0: any free port).
# 0 = always the least-loaded worker. Use a LAN address reachable by the other media hosts when they are not local.
MEDIA_CASCADE_AFTER = env_int("MEDIA_CASCADE_AFTER", 100)
MEDIA_CASCADE_HOST = env_str("MEDIA_CASCADE_HOST", "127.0.0.1")
MEDIA_CASCADE_PORT = env_int("MEDIA_CASCADE_PORT", 0)
