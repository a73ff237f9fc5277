"""The DMS adapter (dms-adapter): dealer management systems in STAR JSON (issue 15)."""
