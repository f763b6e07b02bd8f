"""Build the forward path's native half (media_relay/_native/fastpath.c) with cffi, out-of-line API mode.

Run by the Makefile's venv rule (``make test`` / ``make run`` on a fresh clone); the compiled module lands in
media_relay/ as ``_fastpath*.so`` (ignored by git).  A failed build is not fatal: media_relay/fastpath.py then
keeps the pure-Python path.  ``--check`` only says whether the module imports and works.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "media_relay" / "_native" / "fastpath.c"
MODULE = "media_relay._fastpath"

CDEF = """
typedef struct { void *protect; void *session; int fd; int addrlen; ...; } fp_route;
#define FP_BUFFER ...
#define FP_SRTP_ERROR ...
int fp_set_address(fp_route *route, int family, const char *host, int port);
int fp_protect(const fp_route *route, const char *data, int length, char *out);
int fp_send(const fp_route *route, const char *data, int length);
int fp_send_many(fp_route *const *routes, const char *const *packets, const int *lengths, int *results, int count);
typedef struct {
    fp_route route; uint8_t payload_types[128]; uint32_t ssrc; uint32_t timestamp_offset; uint32_t last_timestamp;
    int sequence_offset; int last_sequence; int extension_id; int audio; int guard; int failed;
    uint64_t packets_sent; uint64_t octets_sent; uint64_t report_ntp; uint32_t report_timestamp;
    uint64_t report_packets; uint64_t report_octets; ...;
} fp_track;
int fp_fanout(fp_track *const *tracks, int count, int payload_type, int marker, int sequence, uint32_t timestamp,
              int extension, uint64_t ntp, const char *payload, int length, int64_t *bytes);
int fp_history(const fp_track *track, int out_sequence, char *header, int *in_sequence);
"""


def build() -> Path:
    """Compile the module and copy it next to media_relay's sources; its path."""
    from cffi import FFI

    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(MODULE, SOURCE.read_text(), extra_compile_args=["-O2"])
    with tempfile.TemporaryDirectory(prefix="fastpath-") as tmp:
        built = Path(ffi.compile(tmpdir=tmp, verbose=False))
        target = ROOT / "media_relay" / ("_fastpath" + sysconfig.get_config_var("EXT_SUFFIX"))
        # A new file renamed over the old one: processes that loaded the old one keep their mapping of it.
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(built, partial)
        partial.replace(target)
    return target


def main() -> int:
    if "--check" not in sys.argv:
        try:
            print(f"fast path built: {build().relative_to(ROOT)}")
        except Exception as error:  # a missing compiler or header: the pure-Python path runs
            print(f"fast path NOT built ({error.__class__.__name__}: {error}); the pure-Python path runs")
            return 0
    sys.path.insert(0, str(ROOT))
    from media_relay import fastpath

    print(f"fast path: {fastpath.status()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
