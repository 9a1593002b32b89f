"""Only the optional C speedup lives here; everything else about the package is in pyproject.toml.

``optional=True``: where no C compiler exists the build goes on without it and the worker uses the pure-Python
version of the same function (slower on bulk inserts, identical results).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sluice._speedups", ["src/sluice/_speedups.c"], optional=True)])
