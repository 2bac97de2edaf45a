"""Background jobs (arq): event imports and cleanup run here (SPEC §4, §6)."""
