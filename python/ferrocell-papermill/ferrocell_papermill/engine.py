"""The papermill engine `ferrocell`: how papermill finds the Rust translator.

Papermill loads plugins from two entry-point groups only, `papermill.engine` and
`papermill.io` (it has none for translators), and loads every engine entry point
while it is imported, before it translates any parameter. This package declares one
engine, and importing this module imports the translator, which registers itself.
So `papermill in.ipynb out.ipynb -p n 4` needs no code from the user.

The engine itself is papermill's ordinary nbclient engine under another name, so
`--engine ferrocell` runs a notebook exactly as the default engine does.
"""

from papermill.engines import NBClientEngine

# Importing the translator registers it (ferrocell_papermill.translator.register).
from . import translator  # noqa: F401


class FerrocellEngine(NBClientEngine):
    """Papermill's nbclient engine; loading it is what registers the translator."""
