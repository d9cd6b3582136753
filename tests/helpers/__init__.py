"""Helpers that several test modules use; test modules import from here, never from each other."""
