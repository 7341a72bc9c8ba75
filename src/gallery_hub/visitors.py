"""Temporary gallery visitors: who they are and the one role they hold.

A visitor is a hub user in the group `gallery-visitors`. The role is granted through the
group (never to the user directly), so it survives hub restarts: JupyterHub re-applies
`load_roles` at every start, and a role given to a group keeps its members.
"""

from __future__ import annotations

from jupyterhub import orm, roles

VISITOR_PREFIX = "gallery-"
VISITOR_GROUP = "gallery-visitors"
VISITOR_ROLE = "gallery-visitor"

# Their own servers (the launch, the progress page, stopping), what a login needs
# (identify: name and groups), and the activity their servers report (the idle culler
# reads it). No tokens, no other users, no admin pages.
VISITOR_SCOPES = [
    "servers!user",
    "access:servers!user",
    "read:users:name!user",
    "read:users:groups!user",
    "users:activity!user",
]


def visitor_role() -> dict:
    """The `load_roles` entry: the visitor scopes, granted to the visitors' group."""
    return {
        "name": VISITOR_ROLE,
        "description": "Temporary gallery visitors: their own examples, nothing else.",
        "scopes": list(VISITOR_SCOPES),
        "groups": [VISITOR_GROUP],
    }


def is_visitor(user) -> bool:
    """True for a gallery visitor (a JupyterHub User or orm.User)."""
    return user is not None and any(g.name == VISITOR_GROUP for g in user.groups)


def make_visitor(db, orm_user: orm.User) -> None:
    """Turn a just-created user into a visitor: in the group, without the default role."""
    group = orm.Group.find(db, VISITOR_GROUP)
    if group is None:
        group = orm.Group(name=VISITOR_GROUP)
        db.add(group)
    if group not in orm_user.groups:
        orm_user.groups.append(group)
    roles.strip_role(db, entity=orm_user, rolename="user")
    db.commit()


def strip_default_role_from_visitors(db) -> int:
    """Remove the `user` role from every visitor (older releases left it on restart).

    Returns how many visitors held it.
    """
    group = orm.Group.find(db, VISITOR_GROUP)
    user_role = orm.Role.find(db, "user")
    if group is None or user_role is None:
        return 0
    holders = [u for u in group.users if user_role in u.roles]
    for orm_user in holders:
        roles.strip_role(db, entity=orm_user, rolename="user")
    db.commit()
    return len(holders)
