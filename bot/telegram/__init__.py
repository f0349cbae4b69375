"""The Telegram channel: intake of stored updates, the adapter, the sender's transport, pushes, buttons, webhook."""
