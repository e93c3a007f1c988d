"""Subcommands of the ``squeezehw`` command line, one module each (see squeezehw/cli.py)."""
