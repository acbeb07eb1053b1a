"""The `verihook` commands, one module per command group; app.py lists them in COMMANDS."""
