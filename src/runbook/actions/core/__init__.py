"""Built-in actions (``core.*``): set values, classify, wait for a condition, assert, manual steps."""
