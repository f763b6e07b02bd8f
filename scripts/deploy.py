"""Render the deploy/ templates, or run the production stack (nginx + supervisord) locally: `make run-cluster`.

    python scripts/deploy.py render --out /tmp/rooms-conf --server-name rooms.example.org \\
        --app-dir /srv/rooms --tls-cert /etc/ssl/rooms.pem --tls-key /etc/ssl/rooms.key
    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=postgres://... python scripts/deploy.py run --port 8000

``render`` fills the placeholders (@...@) of deploy/nginx.conf, deploy/rooms-locations.conf and
deploy/supervisord.conf and writes them to --out (docs/deployment.md says where they go).

``run`` does what an operator does, as the current user, on loopback ports: migrate, collectstatic, a
self-signed certificate (manage.py makecert), the rendered files in a state directory, supervisord from the
virtualenv (daphne x --daphnes, runmedia x --workers, runtasks x --task-workers) and Debian's nginx
(scripts/system-deps.sh) in front: http://HOST:PORT and https://HOST:TLS_PORT. It runs until SIGINT/SIGTERM,
then stops nginx and supervisord (which stops its programs).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
TEMPLATES = ("nginx.conf", "rooms-locations.conf", "supervisord.conf")
START_TIMEOUT = 90.0
logger = logging.getLogger("deploy")


def render_text(template: str, values: dict[str, str]) -> str:
    """``template`` with every placeholder (@NAME@) replaced; a name without a value is an error."""
    out = template
    for name, value in values.items():
        out = out.replace(f"@{name}@", value)
    leftover = sorted(set(re.findall(r"@([A-Z_]+)@", out)))
    if leftover:
        raise ValueError(f"no value for {', '.join('@' + n + '@' for n in leftover)}")
    return out


def values_from(args: argparse.Namespace, conf_dir: Path) -> dict[str, str]:
    """The placeholder values of the templates from the command line."""
    listen = f"{args.listen}:" if args.listen else ""
    https_suffix = "" if args.https_port == 443 else f":{args.https_port}"
    http_root = (
        f"include {conf_dir}/rooms-locations.conf;" if args.http == "serve"
        else f"location / {{ return 301 https://$host{https_suffix}$request_uri; }}"
    )
    backends = getattr(args, "upstream", None) or [f"127.0.0.1:{args.daphne_port + i}" for i in range(args.daphnes)]
    servers = "\n".join(f"    server {backend} max_fails=1 fail_timeout=5s;" for backend in backends)
    return {
        "DAPHNE_SERVERS": servers,
        "HTTP_LISTEN": f"{listen}{args.http_port}",
        "HTTPS_LISTEN": f"{listen}{args.https_port}",
        "HTTP_ROOT": http_root,
        "SERVER_NAME": args.server_name,
        "TLS_CERT": str(args.tls_cert),
        "TLS_KEY": str(args.tls_key),
        "CONF_DIR": str(conf_dir),
        "STATIC_ROOT": str(args.static_root),
        "RECORDINGS_DIR": str(args.recordings_dir),
        "APP_DIR": str(args.app_dir),
        "VENV": str(args.venv),
        "DAPHNES": str(args.daphnes),
        "DAPHNE_PORT": str(args.daphne_port),
        "WORKERS": str(args.workers),
        "TASK_WORKERS": str(args.task_workers),
        "RUN_DIR": str(args.run_dir),
        "LOG_DIR": str(args.log_dir),
    }


def render(args: argparse.Namespace, out: Path, conf_dir: Path | None = None) -> list[Path]:
    """Write the rendered templates to ``out`` (nginx includes rooms-locations.conf from ``conf_dir``)."""
    out.mkdir(parents=True, exist_ok=True)
    values = values_from(args, conf_dir or out)
    written = []
    for name in TEMPLATES:
        target = out / name
        target.write_text(render_text((DEPLOY / name).read_text(), values))
        written.append(target)
    return written


def nginx_main(state: Path, site: Path) -> str:
    """A main nginx.conf for an nginx run from a state directory (pid, logs and temp files there)."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # root: workers must read files in private temp dirs
    temp = "\n".join(f"    {kind}_temp_path {state}/tmp/{kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {state}/run/nginx.pid;\n"
        f"error_log {state}/log/nginx-error.log warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n"
        f"    access_log {state}/log/nginx-access.log;\n    sendfile on;\n{temp}\n"
        f"    include {site};\n}}\n"
    )


def ports_free(host: str, ports: list[int]) -> bool:
    """True when nothing listens on any of ``ports``."""
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200 (bounded); raises if ``process`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def manage(*command: str, env: dict[str, str]) -> None:
    """Run a manage.py command of this checkout."""
    subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True)


def stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Signal a child and wait for it (kill it if it lingers)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def run(args: argparse.Namespace) -> int:
    """The stack in the foreground until SIGINT/SIGTERM."""
    if not os.environ.get("REDIS_URL"):
        sys.exit("run-cluster needs REDIS_URL (and DATABASE_URL for PostgreSQL)")
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        sys.exit("nginx is not installed: run scripts/system-deps.sh (Debian's nginx)")
    state = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="rooms-cluster-"))
    for sub in ("conf", "run", "log", "tmp", "certs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    if args.daphne_port == 0:
        args.daphne_port = args.port + 1
    daphne_ports = [args.daphne_port + i for i in range(args.daphnes)]
    if not ports_free("127.0.0.1", daphne_ports):
        sys.exit(f"daphne ports {daphne_ports} are taken: choose --daphne-port")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="conference.settings", MEDIA_MODE="workers",
               STATIC_MANIFEST="true", RECORDINGS_ACCEL_REDIRECT="/_recordings/")
    env.setdefault("STATIC_ROOT", str(ROOT / "staticfiles"))
    env.setdefault("RECORDINGS_DIR", str(ROOT / "recordings"))
    Path(env["RECORDINGS_DIR"]).mkdir(parents=True, exist_ok=True)
    args.static_root, args.recordings_dir = Path(env["STATIC_ROOT"]), Path(env["RECORDINGS_DIR"])
    args.run_dir, args.log_dir = state / "run", state / "log"
    args.tls_cert, args.tls_key = state / "certs" / "cert.pem", state / "certs" / "key.pem"
    args.http_port, args.https_port, args.listen, args.http = args.port, args.tls_port, args.host, "serve"
    manage("migrate", "--noinput", "-v0", env=env)
    if not args.no_collectstatic:
        manage("collectstatic", "--noinput", "-v0", env=env)
    if not args.tls_cert.exists():
        manage("makecert", "--dir", str(state / "certs"), env=env)
    render(args, state / "conf")
    (state / "conf" / "nginx-main.conf").write_text(nginx_main(state, state / "conf" / "nginx.conf"))

    supervisord = subprocess.Popen([str(args.venv / "bin" / "supervisord"), "-c", str(state / "conf" /
                                    "supervisord.conf")], cwd=ROOT, env=env)
    front: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for port in daphne_ports:
            wait_http(f"http://127.0.0.1:{port}/healthz", supervisord)
        front = subprocess.Popen([nginx, "-c", str(state / "conf" / "nginx-main.conf"), "-p", str(state)])
        wait_http(f"http://{args.host}:{args.port}/healthz", front)
        logger.info("serving http://%s:%d and https://%s:%d (nginx -> daphne %s, %d media workers, %d task "
                    "workers); state in %s", args.host, args.port, args.host, args.tls_port, daphne_ports,
                    args.workers, args.task_workers, state)
        while not stopping and supervisord.poll() is None and front.poll() is None:
            time.sleep(0.5)
    except RuntimeError as exc:
        logger.error("%s; logs in %s", exc, state / "log")
        return 1
    finally:
        stop(front, signal.SIGQUIT)  # nginx: graceful
        stop(supervisord)  # supervisord stops its programs first
        if not args.state_dir and not args.keep_state:
            shutil.rmtree(state, ignore_errors=True)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="scripts/deploy.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--daphnes", type=int, default=2, help="daphne processes")
    common.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="media workers (one per core)")
    common.add_argument("--task-workers", type=int, default=1,
                        help="task workers (manage.py runtasks: webhook deliveries, room mixes)")
    common.add_argument("--venv", type=Path, default=ROOT / ".venv", help="the virtualenv with daphne, supervisord")
    common.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout the processes run from")
    common.add_argument("--server-name", default="_", help="nginx server_name")

    r = sub.add_parser("render", parents=[common], help="write the filled-in templates")
    r.add_argument("--out", type=Path, required=True, help="directory to write to")
    r.add_argument("--conf-dir", type=Path, default=Path("/etc/nginx"), help="where rooms-locations.conf will be")
    r.add_argument("--daphne-port", type=int, default=8001, help="port of the first daphne (then +1, +2...)")
    r.add_argument("--upstream", action="append", default=[], metavar="HOST:PORT",
                   help="daphne addresses for the upstream (repeatable; default: 127.0.0.1 and --daphne-port...)")
    r.add_argument("--listen", default="", help="address nginx listens on (default: all)")
    r.add_argument("--http-port", type=int, default=80)
    r.add_argument("--https-port", type=int, default=443)
    r.add_argument("--http", choices=["redirect", "serve"], default="redirect",
                   help="plain HTTP: redirect to HTTPS (production) or serve the site as well")
    r.add_argument("--tls-cert", type=Path, default=Path("/etc/ssl/rooms/fullchain.pem"))
    r.add_argument("--tls-key", type=Path, default=Path("/etc/ssl/rooms/privkey.pem"))
    r.add_argument("--static-root", type=Path, default=Path("/srv/rooms/staticfiles"))
    r.add_argument("--recordings-dir", type=Path, default=Path("/srv/rooms/recordings"))
    r.add_argument("--run-dir", type=Path, default=Path("/run/rooms"))
    r.add_argument("--log-dir", type=Path, default=Path("/var/log/rooms"))

    n = sub.add_parser("run", parents=[common], help="run nginx + supervisord here (make run-cluster)")
    n.add_argument("--host", default="127.0.0.1", help="address nginx listens on")
    n.add_argument("--port", type=int, default=8000, help="nginx's plain HTTP port")
    n.add_argument("--tls-port", type=int, default=8443, help="nginx's HTTPS port (self-signed certificate)")
    n.add_argument("--daphne-port", type=int, default=0, help="port of the first daphne (default: --port + 1)")
    n.add_argument("--state-dir", default="", help="configs, logs, pid files (default: a temporary directory)")
    n.add_argument("--keep-state", action="store_true", help="keep the temporary state directory at exit")
    n.add_argument("--no-collectstatic", action="store_true", help="STATIC_ROOT is already collected")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.command == "render":
        args.conf_dir = args.conf_dir.resolve() if args.conf_dir != Path("/etc/nginx") else args.conf_dir
        for path in render(args, args.out, args.conf_dir):
            logger.info("wrote %s", path)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
