"""Tools for rule authors that sit on top of the engine: semantic checks for ``ipm-cds validate``.

Modules here may import the ruleset and the engine; nothing below them imports this package.
"""
