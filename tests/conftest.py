"""Shared fixtures: real servers on loopback, started and stopped per test session or test."""

pytest_plugins = [
    "tests.fixtures.radicale",
    "tests.fixtures.xandikos",
    "tests.fixtures.smtp",
    "tests.fixtures.google",
    "tests.fixtures.graph",
]
