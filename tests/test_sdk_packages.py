"""The SDKs install as developers install them: the README's examples run (Python) and type-check (TypeScript).

Python: ``python -m build`` makes the sdist and the wheel (the wheel from the sdist), a fresh virtualenv
installs the wheel with its ``media`` extra from the package index, and the README's example runs in it
against a live daphne while a participant of this process checks what it sent.  npm: the package is packed
as ``npm pack`` does (which generates the ``.d.ts`` from the JSDoc with the pinned TypeScript), installed
into an empty application, and the README's TypeScript example is type-checked there with ``tsc --noEmit``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import roomapi
from roomapi import ROOM_EVENT
from roomapi.client import PROTOCOL_VERSION as SDK_PROTOCOL_VERSION
from rooms.protocol import PROTOCOL_VERSION
from tests.servers import ROOT, DaphneServer

README = ROOT / "README.md"
INSTALL_TIMEOUT = 600.0
RUN_TIMEOUT = 120.0
# npm's words for "the registry cannot be reached" (then, outside CI only, the npm tests are skipped).
NPM_OFFLINE = ("ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET", "ENETUNREACH")


def readme_block(after: str, language: str) -> str:
    """The first ```language code block of the README after the line that contains ``after``, dedented."""
    text = README.read_text()
    start = text.index(after)
    match = re.search(rf"^(?P<indent>[ ]*)```{language}\n(?P<body>.*?)^(?P=indent)```", text[start:], re.S | re.M)
    assert match, f"no ```{language} block after {after!r} in the README"
    return textwrap.dedent(match.group("body"))


def run(command: list[str], *, cwd: Path, timeout: float = INSTALL_TIMEOUT, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (bounded); on failure (``check``) raise with its output."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        output = f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        raise AssertionError(f"{command} failed ({result.returncode}):\n{output}")
    return result


def package_version() -> str:
    """The version both SDKs carry (package.json; pyproject.toml reads it from there)."""
    return str(json.loads((ROOT / "package.json").read_text())["version"])


def test_version_major_is_the_protocol_version() -> None:
    """package.json's major equals the protocol version of the server and of both SDKs."""
    js_source = (ROOT / "rooms/static/rooms/roomapi.js").read_text()
    js_version = re.search(r"export const PROTOCOL_VERSION = (\d+);", js_source)
    assert js_version
    assert int(package_version().split(".")[0]) == PROTOCOL_VERSION == SDK_PROTOCOL_VERSION == int(js_version[1])


# --- Python ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built as ``python -m build`` does (the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    return out


@pytest.fixture(scope="module")
def fresh_python(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the wheel and its ``media`` extra installed from the package index; its python."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=True, clear=True)
    python = home / "bin" / "python"
    wheel = next(dist.glob("roomapi-*.whl"))
    run([str(python), "-m", "pip", "install", "-q", f"{wheel}[media]"], cwd=home)
    return python


def test_distribution_holds_the_sdk_only(dist: Path) -> None:
    """The wheel and the sdist carry the roomapi package (typed) at package.json's version, nothing of the server."""
    version = package_version()
    wheel = dist / f"roomapi-{version}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    assert "roomapi/py.typed" in names and "roomapi/client.py" in names
    assert {name.split("/")[0] for name in names} == {"roomapi", f"roomapi-{version}.dist-info"}
    metadata = zipfile.ZipFile(wheel).read(f"roomapi-{version}.dist-info/METADATA").decode()
    assert "Requires-Dist: websockets" in metadata
    assert re.search(r"Requires-Dist: aiortc.*extra == 'media'", metadata)
    with tarfile.open(dist / f"roomapi-{version}.tar.gz") as sdist:
        tops = {name.split("/")[1] for name in sdist.getnames() if name.count("/") >= 1}
    assert "rooms" not in tops and "conference" not in tops and "roomapi" in tops


@pytest.fixture
def server(transactional_db: Any) -> Iterator[DaphneServer]:
    """A daphne process on the test database."""
    with DaphneServer({"ROOM_IDLE_TIMEOUT": "2"}) as srv:
        yield srv


async def run_in(python: Path, code: str, tmp: Path) -> tuple[int, str]:
    """Run ``code`` with the fresh virtualenv's python, isolated from this checkout (-I, another directory)."""
    script = tmp / "example.py"
    script.write_text(code)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "DJANGO"))}
    process = await asyncio.create_subprocess_exec(
        str(python), "-I", str(script), cwd=tmp, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return int(process.returncode or 0), out.decode()


async def test_readme_python_example_runs_from_the_installed_package(
    fresh_python: Path, server: DaphneServer, tmp_path: Path
) -> None:
    """The README's example, run by the installed package, reaches a participant of this process."""
    code = readme_block("**From Python**", "python")
    assert "ws://127.0.0.1:8000" in code
    probe = "import roomapi, sys; sys.stderr.write('roomapi from ' + roomapi.__file__ + '\\n')\n"
    bob = await roomapi.connect(server.ws_url, "bob")
    room = await bob.join("demo")
    messages: list[Any] = []
    room.on(ROOM_EVENT.MESSAGE, lambda event: messages.append(event.message))
    try:
        status, output = await run_in(fresh_python, probe + code.replace("ws://127.0.0.1:8000", server.ws_url),
                                      tmp_path)
        assert status == 0, output
        assert f"roomapi from {fresh_python.parent.parent}" in output, "the example did not use the installed package"
        assert "['bob']" in output, output
        async with asyncio.timeout(10):
            while len(messages) < 2:
                await asyncio.sleep(0.05)
        assert [(m.sender, m.text) for m in messages] == [("alice", "Hello, Привет, 你好 👋"), ("alice", "psst")]
    finally:
        await bob.disconnect()


MEDIA_EXAMPLE = """
import asyncio, sys

import roomapi
from aiortc.mediastreams import VideoStreamTrack
from roomapi import STREAM_STATUS


async def main(url: str) -> None:
    alice = await roomapi.connect(url, "alice")
    published = await (await alice.join("media-demo")).publish(video=VideoStreamTrack())
    await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=20)
    carol = await roomapi.connect(url, "carol")
    room = await carol.join("media-demo")
    playing = await room.get_participant("alice").get_streams()[0].play()
    await playing.wait_for(STREAM_STATUS.PLAYING, timeout=20)
    frame = await asyncio.wait_for(playing.video.recv(), 20)
    print("frame", frame.width, frame.height)
    await carol.disconnect()
    await alice.disconnect()


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "URL"))
"""


async def test_media_extra_publishes_and_plays(fresh_python: Path, server: DaphneServer, tmp_path: Path) -> None:
    """With the ``media`` extra, the installed package publishes a track and plays it back through the server."""
    status, output = await run_in(fresh_python, MEDIA_EXAMPLE.replace('"URL"', repr(server.ws_url)), tmp_path)
    assert status == 0, output
    assert "frame 640 480" in output, output


# --- npm -------------------------------------------------------------------------------------------------------


def npm_or_skip(result: subprocess.CompletedProcess[str], what: str) -> None:
    """Fail on an npm error; skip (outside CI only) when the npm registry cannot be reached."""
    if result.returncode == 0:
        return
    output = result.stdout + result.stderr
    if os.environ.get("CI") != "true" and any(code in output for code in NPM_OFFLINE):
        pytest.skip(f"the npm registry is unreachable ({what}); CI never skips this")
    raise AssertionError(f"{what} failed:\n{output[-6000:]}")


@pytest.fixture(scope="module")
def npm_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty application with the packed ``roomapi`` npm package installed; TypeScript from the checkout."""
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("npm is required under CI (scripts/system-deps.sh installs it)")
        pytest.skip("needs npm (scripts/system-deps.sh installs it)")
    # The checkout's devDependencies (the pinned TypeScript) into its gitignored node_modules.
    npm_or_skip(run([npm, "install", "--no-audit", "--no-fund"], cwd=ROOT, check=False), "npm install")
    packed = tmp_path_factory.mktemp("npm")
    run([npm, "pack", "--pack-destination", str(packed)], cwd=ROOT)  # runs `prepare`: tsc writes types/
    tarball = next(packed.glob("roomapi-*.tgz"))
    app = tmp_path_factory.mktemp("app")
    (app / "package.json").write_text(json.dumps({"name": "app", "private": True, "type": "module"}))
    (app / "tsconfig.json").write_text(json.dumps({
        "compilerOptions": {"strict": True, "noEmit": True, "target": "es2022", "module": "es2022",
                            "moduleResolution": "bundler", "lib": ["es2022", "dom"], "skipLibCheck": False},
        "files": ["example.ts"],
    }))
    run([npm, "install", "--no-audit", "--no-fund", "--offline", str(tarball)], cwd=app)
    return app


def tsc(app: Path, code: str) -> subprocess.CompletedProcess[str]:
    """``tsc --noEmit`` (the checkout's pinned TypeScript) over ``code`` as the application's example.ts."""
    (app / "example.ts").write_text(code)
    return run([str(ROOT / "node_modules" / ".bin" / "tsc"), "-p", str(app / "tsconfig.json")], cwd=app, check=False)


def test_npm_package_ships_the_module_and_its_types(npm_app: Path) -> None:
    """The installed package holds roomapi.js and the generated .d.ts, and names them in package.json."""
    installed = npm_app / "node_modules" / "roomapi"
    manifest = json.loads((installed / "package.json").read_text())
    assert manifest["type"] == "module" and manifest["version"] == package_version()
    assert (installed / manifest["exports"]["."]["default"]).is_file()
    declarations = (installed / manifest["types"]).read_text()
    assert "export declare function connect(options: ConnectOptions): Connection;" in declarations
    assert "export declare const PROTOCOL_VERSION = " in declarations


def test_readme_typescript_example_type_checks(npm_app: Path) -> None:
    """The README's TypeScript example passes ``tsc --noEmit --strict`` against the installed package."""
    result = tsc(npm_app, readme_block("**From JavaScript**", "ts"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_type_errors_are_caught(npm_app: Path) -> None:
    """The declarations are real types: a wrong argument and an unknown method fail the check."""
    code = readme_block("**From JavaScript**", "ts")
    assert 'room.sendMessage("Hello")' in code
    wrong = code.replace('room.sendMessage("Hello")', "room.sendMessage(42)")
    result = tsc(npm_app, wrong)
    assert result.returncode != 0 and "TS2345" in result.stdout, result.stdout
    result = tsc(npm_app, code.replace("room.publish(", "room.publsh("))
    assert result.returncode != 0 and "publsh" in result.stdout, result.stdout
