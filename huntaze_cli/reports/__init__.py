"""Writers for documents people read outside huntaze (PDF); they print, never compute."""
