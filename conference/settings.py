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
    "rooms",
    "media_relay",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
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
STATIC_ROOT = BASE_DIR / "staticfiles"
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

# --- Recording --------------------------------------------------------------
RECORDINGS_DIR = Path(env_str("RECORDINGS_DIR", str(BASE_DIR / "recordings")))
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
