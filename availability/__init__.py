"""The domain of the availability engine: pure code, no I/O, no clock, no framework."""
