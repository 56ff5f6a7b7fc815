"""Shared pytest setup: markers."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "notebooks: executes a notebook at profile=smoke and validates it with nbval "
        "(runs by default; deselect with -m 'not notebooks')",
    )
