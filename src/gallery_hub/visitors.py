"""Temporary gallery visitors: who they are and the one role they hold.

A visitor is a hub user in the group `gallery-visitors`. The role is granted through the
group (never to the user directly), so it survives hub restarts: JupyterHub re-applies
`load_roles` at every start, and a role given to a group keeps its members.

Warm visitors (the warm pool's, see warm_pool.py) are in the group `gallery-warm` instead
until a click claims one: same role, but out of the idle culler's reach, which sees only
`gallery-visitors`.
"""

from __future__ import annotations

from jupyterhub import orm, roles

VISITOR_PREFIX = "gallery-"
VISITOR_GROUP = "gallery-visitors"
VISITOR_ROLE = "gallery-visitor"
WARM_GROUP = "gallery-warm"
VISITOR_GROUPS = (VISITOR_GROUP, WARM_GROUP)

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
        "groups": list(VISITOR_GROUPS),
    }


def is_visitor(user) -> bool:
    """True for a gallery visitor, warm or claimed (a JupyterHub User or orm.User)."""
    groups = getattr(user, "groups", None) or []  # a service has none
    return any(g.name in VISITOR_GROUPS for g in groups)


def is_warm(user) -> bool:
    """True for a warm visitor nobody has claimed yet."""
    return any(g.name == WARM_GROUP for g in getattr(user, "groups", None) or [])


def _group(db, name: str) -> orm.Group:
    group = orm.Group.find(db, name)
    if group is None:
        group = orm.Group(name=name)
        db.add(group)
    return group


def make_visitor(db, orm_user: orm.User, group_name: str = VISITOR_GROUP) -> None:
    """Turn a just-created user into a visitor: in the group, without the default role."""
    group = _group(db, group_name)
    if group not in orm_user.groups:
        orm_user.groups.append(group)
    roles.strip_role(db, entity=orm_user, rolename="user")
    db.commit()


def claim_warm_visitor(db, orm_user: orm.User) -> None:
    """A warm visitor becomes an ordinary one: the idle culler now sees it."""
    warm = _group(db, WARM_GROUP)
    if warm in orm_user.groups:
        orm_user.groups.remove(warm)
    visitors = _group(db, VISITOR_GROUP)
    if visitors not in orm_user.groups:
        orm_user.groups.append(visitors)
    db.commit()


def strip_default_role_from_visitors(db) -> int:
    """Remove the `user` role from every visitor (older releases left it on restart).

    Returns how many visitors held it.
    """
    user_role = orm.Role.find(db, "user")
    if user_role is None:
        return 0
    holders = {
        u.name: u
        for name in VISITOR_GROUPS
        if (group := orm.Group.find(db, name)) is not None
        for u in group.users
        if user_role in u.roles
    }
    for orm_user in holders.values():
        roles.strip_role(db, entity=orm_user, rolename="user")
    db.commit()
    return len(holders)
