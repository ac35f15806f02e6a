"""The plugin manager: built-in backends and the ``sendarix`` entry points."""

from __future__ import annotations

import pluggy

from sendarix_backends import builtin, hookspecs

__all__ = ["ENTRY_POINT_GROUP", "get_plugin_manager"]

ENTRY_POINT_GROUP = "sendarix"


def get_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """Return a plugin manager with the built-ins and installed plugins.

    The built-ins register first, so an installed plugin is asked before
    them. ``check_pending`` makes a misspelt hook name fail here, at start,
    instead of being silently ignored.
    """
    manager = pluggy.PluginManager("sendarix")
    manager.add_hookspecs(hookspecs)
    manager.register(builtin, name="sendarix.builtin")
    if load_entry_points:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    manager.check_pending()
    return manager
