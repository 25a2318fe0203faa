"""Small shared helpers: atomic file output, run folders, provenance, seeding."""
