"""dtxfast's benchmark suite (pytest-benchmark); installed as ``dtxfast._benchsuite``.

Run one area with ``dtx bench <area>`` (a table of ratios) or plainly with
``pytest bench/bench_<area>.py``. ``DTX_BENCH_QUICK=1`` (``dtx bench --quick``) picks the
smallest sizes.
"""
