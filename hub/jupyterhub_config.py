# JupyterHub configuration for NeuroLang Gallery.
# A thin map from environment variables (see .env.example) to settings; logic lives in
# the gallery_hub package. To use another authenticator (OAuthenticator, LDAP, ...),
# mount a file at /srv/jupyterhub/config.d/*.py: those files are loaded last.
import os
import sys
from pathlib import Path

from gallery_common.hub_contract import (
    ADMIN_SCOPE,
    BUILDER_API_URL,
    BUILDER_URL,
    MANAGE_SCOPE,
    READ_SCOPE,
    SERVICE_NAME,
    SERVICE_PREFIX,
    SERVICE_TOKEN_FILE,
)
from gallery_common.secret_files import read_or_create_secret
from gallery_common.verifier_contract import TOKEN_FILE as VERIFIER_TOKEN_FILE
from gallery_common.verifier_contract import VERIFIER_UID
from gallery_hub.admin_password import load_admin_password
from gallery_hub.hub_settings import HubSettings
from gallery_hub.stack_address import address_on_network
from gallery_hub.system_visitor import SYSTEM_GROUP, system_visitor_role
from gallery_hub.visitors import VISITOR_GROUP, WARM_GROUP, is_visitor, visitor_role

c = get_config()
settings = HubSettings.from_env(os.environ)
state = settings.state_dir
state.mkdir(parents=True, exist_ok=True)
state.chmod(0o700)

# The hub and its proxy (configurable-http-proxy, started by the hub). Traefik sends
# every request to port 8000, which listens only on the stack's network: user containers
# (on the users network) reach the hub API on port 8081 and nothing else. The proxy adds
# no X-Forwarded-* headers of its own, so the hub sees what Traefik saw (the client's
# address, https); the hub trusts those headers only from its proxy (gallery_hub.hub_app).
proxy_ip = address_on_network(settings.stack_network)
c.JupyterHub.bind_url = f"http://{proxy_ip}:8000"
Path("/tmp/hub-proxy-url").write_text(f"http://{proxy_ip}:8000")  # noqa: S108 (healthcheck)
c.ConfigurableHTTPProxy.command = ["configurable-http-proxy", "--no-x-forward"]
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = "http://hub:8081"
c.GalleryHub.compose_project = settings.project
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.auth_token = read_or_create_secret(state / "proxy-auth-token")[0]
c.JupyterHub.template_paths = ["/srv/jupyterhub/templates"]
# The navigation bar's Environments link (hub/templates/page.html).
c.JupyterHub.template_vars = {
    "environments_url": SERVICE_PREFIX,
    "environments_scope": MANAGE_SCOPE,
    # A visitor's "this example has stopped" page (hub/templates/not_running.html).
    "gallery_idle_minutes": max(1, settings.idle_timeout_s // 60),
    "gallery_max_hours": f"{settings.max_age_s / 3600:g}",
}
# After login, land on the home page rather than starting a server right away.
c.JupyterHub.default_url = "/hub/home"
# Behind Traefik's TLS (Let's Encrypt or the site's own certificate) every cookie is
# Secure: the hub's, the XSRF cookie and the user servers' (passed on to them).
if settings.https:
    c.JupyterHub.tornado_settings = {"cookie_options": {"secure": True}}
if settings.domain:
    c.JupyterHub.public_url = f"https://{settings.domain}/"

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

# User containers: on their own internal network (no route to the host or the stack's
# network), limited, unprivileged, the internet only through the egress proxy.
c.JupyterHub.spawner_class = "gallery_hub.spawner.GallerySpawner"
c.GallerySpawner.network_name = settings.user_network
c.GallerySpawner.compose_project = settings.project
# Each container's own firewall: its network leads to the hub and the egress proxy only.
c.GallerySpawner.network_seal_image = settings.egress_image
c.GallerySpawner.egress_proxy = "http://egress:3128" if settings.user_egress == "proxy" else ""
c.GallerySpawner.tmp_size = settings.user_tmp_size
c.GallerySpawner.log_max_size = settings.user_log_max_size
c.GallerySpawner.disk_quota = settings.user_disk_quota
# A start includes its wait in the start queue (GALLERY_START_CONCURRENCY at a time).
c.GallerySpawner.start_timeout = 600
c.GallerySpawner.max_memory_gb = settings.max_memory_gb
c.GallerySpawner.max_cpu = settings.max_cpu
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
# Behind HTTPS the user servers' own XSRF cookie is Secure too (their login cookie
# follows the hub's cookie_options).
if settings.https:
    c.GallerySpawner.args.append(
        "--ServerApp.tornado_settings={'xsrf_cookie_kwargs': {'secure': True}}"
    )
# User servers outlive a hub restart; the hub finds them again when it starts.
c.JupyterHub.cleanup_servers = False
c.GallerySpawner.data_volume = settings.data_volume
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
service_token, _ = read_or_create_secret(Path(SERVICE_TOKEN_FILE))
gallery_token, _ = read_or_create_secret(Path("/srv/jupyterhub/state/gallery-service-token"))
warm_pool_token, _ = read_or_create_secret(state / "warm-pool-service-token")
verification_token, _ = read_or_create_secret(state / "verification-service-token")
# The verifier service (headless chromium) reads its token from the shared volume.
verifier_token, _ = read_or_create_secret(Path(VERIFIER_TOKEN_FILE))
os.chown(VERIFIER_TOKEN_FILE, VERIFIER_UID, VERIFIER_UID)

c.GalleryHandlersMixin.gallery_file = str(settings.gallery_file)
c.GalleryHandlersMixin.thumbnails_dir = str(settings.thumbnails_dir)
c.GalleryHandlersMixin.gallery_token = gallery_token
c.GalleryHandlersMixin.builder_api_url = BUILDER_API_URL
# The gallery's caps, enforced by the spawner at every start (config.d/ may change them).
c.GalleryLimits.max_servers = settings.max_servers
c.GalleryLimits.max_servers_per_visitor = settings.max_servers_per_visitor
c.GalleryLimits.launches_per_minute = settings.launches_per_minute
c.GalleryLimits.min_free_disk_gb = settings.min_free_disk_gb
c.GalleryLimits.start_concurrency = settings.start_concurrency
# The warm pool (examples' `warm: N` in gallery.yaml, GALLERY_WARM_MAX in all).
c.GalleryHandlersMixin.warm_pool_token = warm_pool_token
c.GalleryHandlersMixin.warm_max = settings.warm_max
c.GalleryHandlersMixin.max_age_s = settings.max_age_s
# Verified examples: the system visitor launches each one, the verifier renders it.
# GALLERY_VERIFY=false: no verification (cards say ready once built; nothing is launched).
c.GalleryVerification.service_token = verification_token if settings.verify else ""
c.GalleryVerification.worker_token = verifier_token
c.GalleryVerification.every_h = settings.verify_every_h
c.GalleryVerification.timeout_s = settings.verify_timeout_s
c.GalleryVerification.results_dir = str(state / "verifications")
c.JupyterHub.allow_named_servers = True
# Also bounds the server records a visitor can make through /hub/spawn/<name>/<server>.
c.JupyterHub.named_server_limit_per_user = lambda handler: (
    settings.max_servers_per_visitor if is_visitor(handler.current_user) else 0
)
c.JupyterHub.custom_scopes = {
    MANAGE_SCOPE: {"description": "Add, rebuild, cancel and delete environments."},
    READ_SCOPE: {"description": "List environments and builds."},
}
c.JupyterHub.services = [
    {
        "name": SERVICE_NAME,
        "display": False,  # the hub's navigation bar links to it (hub/templates/page.html)
        "url": BUILDER_URL,
        "api_token": service_token,
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": [MANAGE_SCOPE, ADMIN_SCOPE],
    },
    {"name": "gallery", "api_token": gallery_token},
    # The warm pool, inside the hub, starts its servers through the hub's API.
    {"name": "gallery-warm-pool", "api_token": warm_pool_token},
    # So does the verification, for the system visitor's servers.
    {"name": "gallery-verification", "api_token": verification_token},
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
    WARM_GROUP: {"users": []},
    SYSTEM_GROUP: {"users": []},
}
c.JupyterHub.load_roles = [
    {
        "name": "environment-manager",
        "description": "Manage environments on the environments page and API.",
        "scopes": [MANAGE_SCOPE, f"access:services!service={SERVICE_NAME}"],
        "groups": ["environment-managers"],
    },
    # Granted through the visitors' group, so it survives hub restarts.
    visitor_role(),
    system_visitor_role(),
    {"name": "gallery-reader", "scopes": [READ_SCOPE], "services": ["gallery"]},
    {
        "name": "gallery-warm-pool",
        "description": "Start, stop and remove the warm pool's visitors.",
        # ... and render their example once (through a short-lived token of theirs).
        "scopes": [
            f"admin:users!group={WARM_GROUP}",
            f"servers!group={WARM_GROUP}",
            f"tokens!group={WARM_GROUP}",
        ],
        "services": ["gallery-warm-pool"],
    },
    {
        "name": "gallery-verification",
        "description": "Start and stop the system visitor's servers (verified examples).",
        "scopes": [f"servers!group={SYSTEM_GROUP}"],
        "services": ["gallery-verification"],
    },
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
