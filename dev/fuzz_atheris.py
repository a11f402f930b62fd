"""Coverage-guided fuzzing of the two edges under atheris (libFuzzer), seeded from the regression
corpus: the same checks as tests/test_fuzz_bus.py and tests/test_fuzz_shim.py, for long runs by
hand (atheris is not a test dependency: `pip install atheris`).

    python dev/fuzz_atheris.py bus  -atheris_runs=200000 -max_len=70000 [libFuzzer flags]
    python dev/fuzz_atheris.py shim -max_total_time=600 -max_len=70000

New inputs go to ./fuzz-<edge>-found/ (seeded from tests/fuzz_corpus/<edge>/, left as it is).

A crash (an exception other than the edge's own refusals) is written by libFuzzer as
crash-<sha1> in the current directory: copy it into tests/fuzz_corpus/<edge>/ under a name
saying what it is, so that every test run replays it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

with atheris.instrument_imports():
    from coordinator.bus import protocol as p
    from coordinator.live.translate import Invalid, translate
    from keyrite import plainjson  # noqa: F401 - instrumented with the edges it serves
    from signer_shim import protocol

from tests.machine_helpers import T0, roster  # noqa: E402

ROSTER = roster()


def bus(data: bytes) -> None:
    try:
        message = p.decode(data, p.FROM_CONSOLE)
    except p.ProtocolError as e:
        str(e).encode("utf-8")
        return
    p.encode(message)
    if isinstance(message, p.Command):
        for officer in ("KGA1", "WI1"):
            try:
                translate(ROSTER, "KGA", officer, message.body, T0)
            except Invalid as e:
                str(e).encode("utf-8")


def shim(data: bytes) -> None:
    try:
        req = protocol.parse_request(data)
    except protocol.ProtocolError as e:
        assert e.type in ("BadRequest", "UnsupportedVersion", "UnknownMethod"), e.type
        protocol.error(e.id, e.type, str(e))
        return
    protocol.parse_request(req.to_line())


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("bus", "shim"):
        sys.exit(__doc__)
    edge = sys.argv[1]
    corpus = ROOT / "tests" / "fuzz_corpus" / edge
    argv = [sys.argv[0], *sys.argv[2:]]
    if not any(not a.startswith("-") for a in argv[1:]):
        # libFuzzer writes what it finds to the first folder, reads seeds from the others: the
        # repository's corpus stays as it is
        scratch = Path(f"fuzz-{edge}-found")
        scratch.mkdir(exist_ok=True)
        argv += [str(scratch), str(corpus)]
    atheris.Setup(argv, bus if edge == "bus" else shim)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
