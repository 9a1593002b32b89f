"""Sources: where changes come from."""
