"""agegender."""
