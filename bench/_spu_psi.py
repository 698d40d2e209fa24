"""Time SecretFlow SPU's two-party PSI (RR22, ECDH on Curve25519, KKRT) on the ``psi`` benchmark's ids.

SPU needs ``numpy < 2``, so it cannot share dtxfast's environment: ``bench_psi.py`` runs this script
under the interpreter named by ``DTX_BENCH_SPU_PYTHON`` (see :func:`._util.run_peer_script`). It
imports nothing from dtxfast. Usage::

    python _spu_psi.py '{"protocol": "rr22", "size": 100000, "rounds": 1}'

and prints one JSON object: ``{"times": [seconds per run, ...], "spu": version, "intersection": n}``.

What is timed: ``spu.psi.psi_execute`` for both parties at once, one thread each over SPU's
in-memory link (the parties of dtxfast's ``psi.total`` also run in one process), receiver rank 0,
no result broadcast. The ids are the benchmark's (``user-%08d``, requester 0..n-1, signer
n/2..3n/2-1: 50% overlap), written to one CSV file per party before the clock starts; SPU's API
reads its input from and writes its result to CSV files, so that I/O is inside the timed part
(a few percent of a run: two files of ``n`` short lines each). The script checks that the
intersection has ``n/2`` ids.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import spu.libspu as libspu
import spu.psi as psi
from _spu_parties import link_desc, run_parties

_PROTOCOLS = {
    "rr22": (psi.PsiProtocol.PROTOCOL_RR22, None),
    "ecdh": (psi.PsiProtocol.PROTOCOL_ECDH, psi.EllipticCurveType.CURVE_25519),
    "kkrt": (psi.PsiProtocol.PROTOCOL_KKRT, None),
}


def _config(protocol: str, src: Path, dst: Path) -> psi.PsiExecuteConfig:
    kind, curve = _PROTOCOLS[protocol]
    proto = psi.PsiProtocolConfig(protocol=kind, receiver_rank=0, broadcast_result=False)
    if curve is not None:
        proto.ecdh_params = psi.EcdhParams(curve=curve)
    return psi.PsiExecuteConfig(
        protocol_conf=proto,
        input_params=psi.InputParams(type=psi.SourceType.SOURCE_TYPE_FILE_CSV, path=str(src),
                                     selected_keys=["id"], keys_unique=True),
        output_params=psi.OutputParams(type=psi.SourceType.SOURCE_TYPE_FILE_CSV, path=str(dst),
                                       disable_alignment=True),
    )


def main() -> None:
    args = json.loads(sys.argv[1])
    protocol, n, rounds = args["protocol"], int(args["size"]), int(args.get("rounds", 1))
    if protocol not in _PROTOCOLS:
        raise SystemExit(f"unknown protocol {protocol!r}")
    with tempfile.TemporaryDirectory(prefix="dtx-spu-psi-") as tmp:
        d = Path(tmp)
        sets = [range(n), range(n // 2, n + n // 2)]
        for rank, ids in enumerate(sets):
            (d / f"in{rank}.csv").write_text("id\n" + "".join(f"user-{i:08d}\n" for i in ids))
        desc = link_desc(2)

        def party(rank: int):  # type: ignore[no-untyped-def]
            return psi.psi_execute(_config(protocol, d / f"in{rank}.csv", d / f"out{rank}.csv"),
                                   libspu.link.create_mem(desc, rank))

        def run_once() -> int:
            return int(run_parties(2, party)[0].intersection_count)

        times, found = [], -1
        for _ in range(rounds):
            t0 = time.perf_counter()
            found = run_once()
            times.append(time.perf_counter() - t0)
        if found != n // 2:
            raise SystemExit(f"SPU {protocol} found {found} ids, expected {n // 2}")
    import spu

    print(json.dumps({"times": times, "spu": getattr(getattr(spu, "version", None), "__version__", "?"),
                      "intersection": found}), flush=True)


if __name__ == "__main__":
    main()
    # SPU's resource manager logs to stdout from its static destructors at exit; the JSON object must
    # stay the last line (run_peer_script reads it), so leave without running them.
    os._exit(0)
