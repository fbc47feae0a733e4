"""What the console's keys mean beyond their bindings: which actions change something."""

from __future__ import annotations

#: binding ids of actions that change something: a read-only console does not offer them
#: (footer, palette) and refuses them with a toast when their key is pressed anyway
MUTATING_ACTIONS = frozenset(
    {
        "cancel",
        "force_cancel",
        "retry",
        "priority_up",
        "priority_down",
        "deploy",
        "drain",
        "undrain",
    }
)
