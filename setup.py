"""Only the optional C speedups live here; everything else about the package is in pyproject.toml.

``optional=True``: where no C compiler exists the build goes on without it and the worker uses the pure-Python
version of the same functions (slower on bulk inserts, identical results).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("sluice._speedups", ["src/sluice/_speedups.c"], optional=True),
        Extension("sluice._pgrows", ["src/sluice/_pgrows.c"], optional=True),
        Extension("sluice._eventjson", ["src/sluice/_eventjson.c"], optional=True),
    ]
)
