# JupyterHub configuration for NeuroLang Gallery.
# A thin map from environment variables (see .env.example) to settings; logic lives in
# the gallery_hub package. To use another authenticator (OAuthenticator, LDAP, ...),
# mount a file at /srv/jupyterhub/config.d/*.py: those files are loaded last.
import os
import sys
from pathlib import Path

from gallery_common.secret_files import read_or_create_secret
from gallery_hub.admin_password import load_admin_password
from gallery_hub.gallery_handlers import (
    VISITOR_GROUP,
    VISITOR_ROLE,
    is_visitor,
)
from gallery_hub.hub_settings import HubSettings

c = get_config()
settings = HubSettings.from_env(os.environ)
state = settings.state_dir
state.mkdir(parents=True, exist_ok=True)
state.chmod(0o700)

# The hub and its proxy (configurable-http-proxy, started by the hub). Traefik sends
# every request to port 8000; user containers call the hub API on port 8081.
c.JupyterHub.bind_url = "http://:8000"
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = "http://hub:8081"
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.auth_token = read_or_create_secret(state / "proxy-auth-token")[0]
c.JupyterHub.template_paths = ["/srv/jupyterhub/templates"]
# After login, land on the home page rather than starting a server right away.
c.JupyterHub.default_url = "/hub/home"

# The first admin. Without GALLERY_ADMIN_PASSWORD a password is generated once and
# printed once; only its hash is kept on the hub state volume.
admin_password = load_admin_password(state, settings.admin_password)
if admin_password.generated_password:
    print(
        "\n"
        f"*** Generated a password for the admin user {settings.admin_user!r}: "
        f"{admin_password.generated_password}\n"
        "*** It is shown only this once. To choose your own, set GALLERY_ADMIN_PASSWORD "
        "in .env and run `docker compose up -d`.\n",
        file=sys.stderr,
        flush=True,
    )
c.JupyterHub.authenticator_class = "gallery_hub.authenticator.GalleryAuthenticator"
c.GalleryAuthenticator.admin_user = settings.admin_user
c.GalleryAuthenticator.admin_password_hash = admin_password.password_hash
c.Authenticator.admin_users = {settings.admin_user}
c.Authenticator.allowed_users = {settings.admin_user}

# User containers: on their own network (never the stack's), limited, unprivileged.
c.JupyterHub.spawner_class = "gallery_hub.spawner.GallerySpawner"
c.GallerySpawner.network_name = settings.user_network
# Container names: <project>-user-<name> (plus --<server> for named servers).
c.GallerySpawner.prefix = f"{settings.project}-user"
c.GallerySpawner.use_internal_ip = True
c.GallerySpawner.gallery_file = str(settings.gallery_file)
c.GallerySpawner.mem_limit = settings.default_mem_limit
c.GallerySpawner.cpu_limit = settings.default_cpu_limit
# Every environment serves Voila next to Jupyter (notebooks and .py files).
c.GallerySpawner.cmd = ["jupyterhub-singleuser"]
c.GallerySpawner.args = [
    "--VoilaConfiguration.enable_nbextensions=True",
    '--VoilaConfiguration.extension_language_mapping={".py": "python"}',
]
# User servers outlive a hub restart; the hub finds them again when it starts.
c.JupyterHub.cleanup_servers = False
c.GallerySpawner.volumes = {
    settings.data_volume: {
        "bind": settings.data_mount_path,
        "mode": "ro" if settings.data_read_only else "rw",
    }
}

# Two services and their roles:
# - environments (the builder): an external service under /services/environments/,
#   logged in through the hub's OAuth. It lets in tokens with the custom scope below
#   (anyone in the group environment-managers) or with admin-ui (JupyterHub admins: the
#   admin role cannot be given extra scopes). Its own token has no scopes at all.
# - the public gallery (/hub/gallery, / redirects there): pages added by the
#   authenticator, temporary visitors with a narrow role, the idle culler limited to
#   their group, and a token that may only list builds (for "building" cards).
MANAGE_SCOPE = "custom:environments:manage"
READ_SCOPE = "custom:environments:read"
service_token, _ = read_or_create_secret(Path("/srv/service-tokens/environments-service-token"))
gallery_token, _ = read_or_create_secret(Path("/srv/jupyterhub/state/gallery-service-token"))

c.GalleryAuthenticator.gallery_settings = settings
c.GalleryAuthenticator.gallery_token = gallery_token
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = lambda handler: (
    settings.max_servers_per_visitor if is_visitor(handler.current_user) else 0
)
c.JupyterHub.custom_scopes = {
    MANAGE_SCOPE: {"description": "Add, rebuild, cancel and delete environments."},
    READ_SCOPE: {"description": "List environments and builds."},
}
c.JupyterHub.services = [
    {
        "name": "environments",
        "display": False,  # the hub's navigation bar links to it (hub/templates/page.html)
        "url": "http://builder:8090",
        "api_token": service_token,
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": [MANAGE_SCOPE, "admin-ui"],
    },
    {"name": "gallery", "api_token": gallery_token},
    {
        "name": "gallery-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={settings.idle_timeout_s}",
            f"--max-age={settings.max_age_s}",
            f"--cull-every={max(5, min(60, settings.idle_timeout_s // 3))}",
            "--remove-named-servers=True",
            "--cull-users=True",
        ],
    },
]
c.JupyterHub.load_groups = {
    "environment-managers": {"users": []},
    VISITOR_GROUP: {"users": []},
}
c.JupyterHub.load_roles = [
    {
        "name": "environment-manager",
        "description": "Manage environments on the environments page and API.",
        "scopes": [MANAGE_SCOPE, "access:services!service=environments"],
        "groups": ["environment-managers"],
    },
    {
        "name": VISITOR_ROLE,
        "description": "Temporary gallery visitors: their own servers, nothing else.",
        # Their own servers, what a login needs (identify: name and groups), and the
        # activity their servers report (the idle culler reads it).
        "scopes": [
            "servers!user",
            "access:servers!user",
            "read:users:name!user",
            "read:users:groups!user",
            "users:activity!user",
        ],
    },
    {"name": "gallery-reader", "scopes": [READ_SCOPE], "services": ["gallery"]},
    {
        "name": "gallery-culler",
        "description": "Stop idle visitors' servers and remove the visitors.",
        "scopes": [
            f"list:users!group={VISITOR_GROUP}",
            f"read:users:activity!group={VISITOR_GROUP}",
            f"read:servers!group={VISITOR_GROUP}",
            f"delete:servers!group={VISITOR_GROUP}",
            f"admin:users!group={VISITOR_GROUP}",
        ],
        "services": ["gallery-culler"],
    },
]

for extra_config in sorted(Path("/srv/jupyterhub/config.d").glob("*.py")):
    load_subconfig(str(extra_config))
