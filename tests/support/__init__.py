"""Helpers shared by the tests, imported one way everywhere: ``from support.<module> import ...``.

``tests/`` is on ``sys.path`` because pytest puts the directory of the rootdir conftest
(tests/conftest.py, no ``__init__.py`` above it) there before collecting anything.
"""
