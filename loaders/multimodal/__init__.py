"""Placeholder: adapters of this family register here on import."""
