"""The `voiceprompt` command line: a thin click layer over the library.

`common` holds what every command shares (one-line failures, running a coroutine, the settings);
one module per command group; `main` registers them all. Commands call into the packages and
never hold logic of their own that a handler or a test would need; nothing imports this package.
"""
