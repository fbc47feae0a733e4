"""The console's views and dialogs."""
