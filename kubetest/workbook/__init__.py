"""The tests of the guide, one module each, called by the thin notebooks."""
