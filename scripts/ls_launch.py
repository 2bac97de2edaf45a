"""Run LocalStack's S3 (strict presigned-URL checks) on loopback, inside a state folder.

Usage (with the interpreter of ``.venv-localstack``, see ``scripts/bootstrap.sh --test``)::

    LS_STATE_DIR=.localstack-state .venv-localstack/bin/python scripts/ls_launch.py 4566

Readiness: ``GET http://127.0.0.1:<port>/_localstack/health`` answers 200.
Stop: SIGTERM to this process (clean exit in a few seconds, no child processes).

Why a launcher instead of ``python -m localstack.runtime.main``:

* LocalStack believes it runs in a container here (``in_docker()`` is true in
  sandboxes), so without ``OVERRIDE_IN_DOCKER=0`` it writes to ``/etc/localstack``,
  ``/var/lib/localstack`` and ``/usr/lib/localstack``.
* 4.13's twisted gateway ignores the host part of ``GATEWAY_LISTEN`` for IPv4 and
  listens on 0.0.0.0; the endpoint class is patched to default to 127.0.0.1.
* S3 object bodies otherwise go to a hard-coded ``/tmp/localstack-s3-storage``.

With it, the only listener is ``127.0.0.1:<port>`` and nothing is written outside
``LS_STATE_DIR``. Keep that folder between runs: the first start builds a
service-catalog cache in it (~9 s), later starts take ~3 s.

Pinned to localstack-core 4.13.1, the last release that runs on Python 3.11.
"""

from __future__ import annotations

import os
import sys
from typing import Any

DEFAULT_PORT = "4566"


def _configure(port: str, state_dir: str) -> None:
    # Containment: always forced, whatever the caller's environment says.
    os.environ.update(
        {
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            # The sandbox looks like a container; use the host layout instead.
            "OVERRIDE_IN_DOCKER": "0",
            # Every LocalStack directory (cache, tmp, data, logs) under the state folder.
            "FILESYSTEM_ROOT": state_dir,
            # No DNS server: never bind port 53, never touch /etc/resolv.conf.
            "DNS_ADDRESS": "0",
        }
    )
    # Behaviour: defaults that the caller may override.
    for key, value in {
        "SERVICES": "s3",
        "EAGER_SERVICE_LOADING": "1",
        # Enforce presigned SigV4/SigV2 signatures (LocalStack's default is to skip them!).
        "S3_SKIP_SIGNATURE_VALIDATION": "0",
        "DISABLE_EVENTS": "1",  # no analytics
        "SKIP_SSL_CERT_DOWNLOAD": "1",  # plain HTTP only, no certificate download
    }.items():
        os.environ.setdefault(key, value)


def _bind_ipv4_to_loopback() -> None:
    # The gateway creates TCP4ServerEndpoint(reactor, port) without an interface,
    # i.e. 0.0.0.0. Default the interface to 127.0.0.1 (an explicit one is kept).
    from twisted.internet import endpoints as _endpoints

    endpoints: Any = _endpoints  # patched on purpose: no type checking of the swap
    original = endpoints.TCP4ServerEndpoint

    def loopback_endpoint(reactor: Any, port: int, backlog: int = 50, interface: str = "") -> Any:
        return original(reactor, port, backlog, interface or "127.0.0.1")

    endpoints.TCP4ServerEndpoint = loopback_endpoint


def _keep_s3_objects_in(state_dir: str) -> None:
    # Object bodies are spooled to DEFAULT_S3_TMP_DIR (/tmp/localstack-s3-storage).
    import localstack.services.s3.provider as s3_provider

    s3_provider.DEFAULT_S3_TMP_DIR = os.path.join(state_dir, "s3-objects")


def main(argv: list[str]) -> None:
    port = argv[1] if len(argv) > 1 else DEFAULT_PORT
    if not port.isdigit():
        raise SystemExit(f"usage: {argv[0]} [PORT]  (got {port!r})")
    state_dir = os.path.abspath(os.environ.get("LS_STATE_DIR", ".localstack-state"))
    os.makedirs(state_dir, exist_ok=True)

    # Order matters: LocalStack reads its configuration from the environment at
    # import time, so everything is set before the first localstack import.
    _configure(port, state_dir)
    _bind_ipv4_to_loopback()
    _keep_s3_objects_in(state_dir)

    from localstack.runtime.main import main as localstack_main

    localstack_main()


if __name__ == "__main__":
    main(sys.argv)
