"""One member, two channels: binding identities with a short-lived code, and staff's /unlink."""
