"""The gallery's system visitor: the hub user the verification launches examples as.

A fixed user in its own group `gallery-verifiers`, not a visitor: the spawner holds it to
no cap (it never counts toward GALLERY_MAX_SERVERS, the per-visitor or per-address
limits), the idle culler never sees it, and its servers run the example's image on the
named server of the example's id, like a visitor's. Its role is a visitor's (its own
servers), granted through its group so it survives restarts. Its server renders
tracebacks (VoilaConfiguration.show_tracebacks), so a failed check can say what raised.
"""

from __future__ import annotations

from jupyterhub import orm, roles

from gallery_hub.visitors import VISITOR_SCOPES

SYSTEM_VISITOR = "gallery-verifier"
SYSTEM_GROUP = "gallery-verifiers"
SYSTEM_ROLE = "gallery-system-visitor"


def system_visitor_role() -> dict:
    """The `load_roles` entry: a visitor's scopes, for the system visitor's group."""
    return {
        "name": SYSTEM_ROLE,
        "description": "The gallery's verification: its own example servers, nothing else.",
        "scopes": list(VISITOR_SCOPES),
        "groups": [SYSTEM_GROUP],
    }


def is_system_visitor(user) -> bool:
    return any(g.name == SYSTEM_GROUP for g in getattr(user, "groups", None) or [])


def ensure_system_visitor(app):
    """The system visitor (created on first use): in its group, without the default role."""
    orm_user = orm.User.find(app.db, SYSTEM_VISITOR)
    if orm_user is None:
        orm_user = orm.User(name=SYSTEM_VISITOR)
        app.db.add(orm_user)
        app.db.commit()
    group = orm.Group.find(app.db, SYSTEM_GROUP)
    if group is None:
        group = orm.Group(name=SYSTEM_GROUP)
        app.db.add(group)
    if group not in orm_user.groups:
        orm_user.groups.append(group)
    roles.strip_role(app.db, entity=orm_user, rolename="user")
    app.db.commit()
    return app.users[orm_user]
