"""Dataset layouts, fixed splits and transforms."""
