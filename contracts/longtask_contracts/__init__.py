"""Shared contracts of longtask: resource models, phases, events and names. No I/O here."""
