"""A griffe extension for the API pages: `from ._x import A as A` makes `A` public.

sciml's `__init__.py` files re-export their public names as redundant aliases (the
equinox convention) rather than through `__all__`; griffe treats imported names as
private unless told otherwise. Only names imported from inside the package count: a
re-export from another library (`sciml.nn`'s `jax.nn.initializers`) is documented
there, and its page says so.
"""

import ast

import griffe


class RedundantAliasesArePublic(griffe.Extension):
    """Marks `from .x import a as a` (relative, or from `sciml`) public."""

    def on_alias_instance(self, *, node, alias, agent, **kwargs):
        """Sets `alias.public` when the import is a redundant alias of a sciml name."""
        if not isinstance(node, ast.ImportFrom):
            return
        internal = node.level > 0 or (node.module or "").split(".")[0] == "sciml"
        for name in node.names:
            if internal and name.asname == name.name == alias.name:
                alias.public = True
