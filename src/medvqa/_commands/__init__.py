"""Subcommands of the ``medvqa`` command, one module each (see :mod:`medvqa.cli`)."""
