"""Group buys (团购): open, join, and settle at the deadline."""
