"""The Documents tab."""
