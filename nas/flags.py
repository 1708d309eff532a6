"""Settings fields that are also command-line options (a leaf module: imports only dataclasses).

A settings dataclass declares a field with `option(default, flag, help)`; the CLI
(`nas.cli_options.settings_options`) turns each such field into a click option with that flag,
default and help, and `nas.search.search_arguments` turns stored settings back into flags. So a
default and its flag are written once, in the dataclass.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

_NO_DEFAULT: Any = object()


def option(default: Any = _NO_DEFAULT, flag: str = "", help: str = "") -> Any:
    """A dataclass field carrying `flag` and `help` in its metadata.

    Without `default` the field is required (and so is its command-line option). `default` must
    be immutable (a tuple, not a list): dataclass fields share it.
    """
    metadata = {"flag": flag, "help": help}
    if default is _NO_DEFAULT:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)
