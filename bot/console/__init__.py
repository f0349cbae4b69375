"""The console channel: a local chat in the terminal, on the same handlers and database."""
