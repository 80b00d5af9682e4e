"""placeholder: filled in by its backend work."""
