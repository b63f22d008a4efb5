"""The ops, one module per op family. Importing a module defines its ops in the ``deepops`` namespace."""
