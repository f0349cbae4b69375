"""Staff roles, lowest first: a cashier serves at the till, a manager runs the programme, the owner may do all.

Roles come from the configuration only (`staff:` lists each person with a role; admins of the VIP groups get
the role `staff.group_admins` names, none by default); nothing said in a chat changes them. A command declares
the least role it needs (`Command.role`, `Command.sub_roles`) and the dispatcher checks it in one place.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CASHIER = "cashier"
    """Looks members up, records purchases, hands over redemptions; and everything a member may do."""
    MANAGER = "manager"
    """Everything staff do, except what only the owner may."""
    OWNER = "owner"
    """Everything, including erasing a member's personal data."""

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def covers(self, needed: Role) -> bool:
        """This role may do what `needed` may."""
        return self.rank >= needed.rank


_RANKS = {Role.CASHIER: 1, Role.MANAGER: 2, Role.OWNER: 3}


def may(role: Role | None, needed: Role | None) -> bool:
    """Whether someone with `role` (None: no staff role) may use what needs `needed` (None: anyone)."""
    return needed is None or (role is not None and role.covers(needed))


def higher(first: Role | None, second: Role | None) -> Role | None:
    """The higher of two roles (None is below every role)."""
    if first is None or (second is not None and second.rank > first.rank):
        return second
    return first
