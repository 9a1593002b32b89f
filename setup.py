"""Only the optional C speedups live here; everything else about the package is in pyproject.toml.

``optional=True``: where no C compiler exists the build goes on without it and the worker uses the pure-Python
version of the same functions (slower on bulk inserts, identical results).
"""

from setuptools import Extension, setup

_ROWCHANGE = "src/sluice/_rowchange.h"  # RowChange construction shared by _speedups and _pgrows

setup(
    ext_modules=[
        Extension("sluice._speedups", ["src/sluice/_speedups.c"], depends=[_ROWCHANGE], optional=True),
        Extension("sluice._pgrows", ["src/sluice/_pgrows.c"], depends=[_ROWCHANGE], optional=True),
        Extension("sluice._eventjson", ["src/sluice/_eventjson.c"], optional=True),
    ]
)
