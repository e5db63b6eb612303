"""rfcx-kit."""
