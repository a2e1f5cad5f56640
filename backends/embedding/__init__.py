"""The embedding worker: text in, unit vectors out (for app.docs)."""
