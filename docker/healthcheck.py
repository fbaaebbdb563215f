"""Container health check: exit 0 when the sidecar answers 200 on /_sidecar/ready.

Used by the images' HEALTHCHECK and docker/docker-compose.yml. It needs nothing beyond
the image itself (the Python standard library and the installed ``sidecar`` package): no
curl, no download. The port and address come from the same configuration the server
reads ($RERANK_SIDECAR_CONFIG, then RERANK_SIDECAR__* variables), so overriding
``server.port`` never leaves the check probing the wrong port.

    python /opt/rerank-sidecar/healthcheck.py                    # readiness (default)
    python /opt/rerank-sidecar/healthcheck.py /_sidecar/health   # liveness only
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0
DEFAULT_PATH = "/_sidecar/ready"


def probe_url(path: str = DEFAULT_PATH) -> str:
    from sidecar.config import load_config

    server = load_config().server
    host = server.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{server.port}{path}"


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else DEFAULT_PATH
    try:
        url = probe_url(path)
    except Exception as exc:  # a bad config: report it in one line, never a traceback
        print(f"unhealthy: {exc}")
        return 1
    # No proxies: HTTP_PROXY in the container must not reroute a loopback probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_S) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}")
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}")
        return 1
    print(f"healthy: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
