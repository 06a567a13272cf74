"""nginx.conf for the gateway, rendered from ``nginx.conf.in`` and the gateway's settings."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

from shared.settings import CommonSettings, GatewaySettings

TEMPLATE = Path(__file__).with_name("nginx.conf.in")
# Debian puts nginx in /usr/sbin, which a non-root user's PATH may lack.
NGINX_FALLBACKS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")


class GatewayConfigError(ValueError):
    """A setting that cannot become nginx configuration (named in the message)."""


def upstream_server(url: str, setting: str) -> str:
    """``host:port`` of an ``http://`` URL, as an nginx upstream ``server`` line wants it."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise GatewayConfigError(f"{setting} must be http://host[:port], not {url!r}")
    port = parts.port or 80
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def find_nginx(configured: str = "") -> str | None:
    """The nginx binary: the setting, else nginx on PATH, else Debian's /usr/sbin/nginx."""
    if configured:
        return configured if Path(configured).is_file() else shutil.which(configured)
    found = shutil.which("nginx")
    if found:
        return found
    return next((path for path in NGINX_FALLBACKS if Path(path).is_file()), None)


def render(settings: GatewaySettings, common: CommonSettings, run_dir: Path) -> str:
    """The whole nginx.conf; every value comes from a validated setting."""
    api = settings.api_url or common.controller_address
    values = {
        "RUN_DIR": str(run_dir),
        "LISTEN": f"{settings.host}:{settings.port}",
        "WEBUI": upstream_server(settings.webui_url, "GATEWAY_WEBUI_URL"),
        "API": upstream_server(api, "GATEWAY_API_URL"),
        "RATE": settings.rate,
        "BURST": str(settings.rate_burst),
        "CONN_PER_IP": str(settings.conn_per_ip),
        "CONN_PER_SERVER": str(settings.conn_per_server),
        "MAX_BODY": str(settings.max_body_bytes),
        "MAX_UPLOAD": str(settings.max_upload_bytes),
        "READ_TIMEOUT": str(settings.read_timeout),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        if any(c in value for c in ";{}\n\"'") or " " in value:
            raise GatewayConfigError(f"{name.lower()} may not hold spaces, quotes or ;{{}}")
        text = text.replace(f"@{name}@", value)
    return text
