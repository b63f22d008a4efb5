"""Sub-commands of the ``deepops`` command line, one module each.

Every module here defines ``register(parsers)``, where ``parsers`` maps ``"top"``, ``"train"``, ``"predict"`` and
``"sample"`` to argparse sub-parser collections; it adds its parser(s) and sets ``func=handler`` on each, where
``handler(args) -> int`` runs the command.  ``deepops/cli.py`` discovers the modules, so adding a command means
adding a file here, e.g. ``deepops train classifier`` lives in ``commands/classifier.py``.  Heavy imports belong in
the handlers, so that ``deepops --help`` stays fast.
"""
