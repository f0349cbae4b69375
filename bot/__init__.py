"""The runtime: configuration, the command line, channel adapters (Telegram, console) and the scheduler."""
