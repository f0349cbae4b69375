"""The framework every feature builds on: neutral messages, the command table and its dispatcher, the
dependencies and ports, the clock, catalogs, parsing, member targets, and the announcement-kind registry.
It imports no feature; features are handed to it (see `handlers.features`)."""
