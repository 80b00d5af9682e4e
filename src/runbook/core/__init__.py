"""Leaf utilities every other floor may import: settings, files, redaction, expressions, clock."""
