"""``dtx demo``: the main job on the embedded default, end to end in one process."""

from __future__ import annotations

from . import app


@app.command()
def demo(
    bits: int = 2048,
) -> None:
    """Run the dtxfast demo on the embedded default (no server to start)."""
    from ._paillier_demo import run

    run(bits)
