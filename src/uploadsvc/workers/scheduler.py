"""The in-process scheduler used without Redis (``uploadsvc dev``).

The API process runs the worker's periodic jobs itself.
"""

from __future__ import annotations

import asyncio
import logging

from uploadsvc.resources import Resources
from uploadsvc.services.imports import reconcile_imports
from uploadsvc.services.scanning import reconcile_scans
from uploadsvc.services.webhooks import reconcile_webhooks
from uploadsvc.workers.jobs import scheduled_cleanup, stale_after

logger = logging.getLogger(__name__)


async def run_in_process_schedule(resources: Resources) -> None:
    """The dev-mode scheduler: cleanup and the import, scan and webhook reconcilers, here."""
    cleanup_every = resources.settings.cleanup_every_minutes * 60
    elapsed = 0
    while True:
        try:
            await reconcile_imports(resources, stale_after=stale_after(resources.settings))
        except Exception:
            logger.exception("in-process import reconciler failed")
        try:
            await reconcile_scans(resources)
        except Exception:
            logger.exception("in-process scan reconciler failed")
        try:
            await reconcile_webhooks(resources)
        except Exception:
            logger.exception("in-process webhook reconciler failed")
        await asyncio.sleep(60)
        elapsed += 60
        if elapsed % cleanup_every == 0:
            try:
                await scheduled_cleanup(resources)
            except Exception:
                logger.exception("in-process cleanup failed; retrying at the next interval")
