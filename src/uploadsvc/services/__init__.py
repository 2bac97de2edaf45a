"""Business rules. Services take a session and storage, and raise domain errors."""
