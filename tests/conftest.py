"""Session-wide test wiring.

Fixtures that start real services live in ``tests/support`` (one module per service) and are registered here,
so every test directory can use them without importing them by hand.
"""

pytest_plugins: list[str] = [
    "tests.support.pg",
    "tests.support.mysql",
    "tests.support.cluster",
    "tests.support.processnode",
    "tests.support.operator",
    "tests.support.api",
    "tests.support.kafka",
]
