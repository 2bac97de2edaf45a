"""Background work on arq.

``settings``: the worker that ``uploadsvc worker`` runs; ``jobs``: the job
functions (thin adapters over services); ``scheduler``: the same periodic
jobs run inside the API process when there is no Redis (``uploadsvc dev``).
"""
