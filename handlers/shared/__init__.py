"""Domain helpers several features share: announcement planning and fan-out, charts, CSV exports, codes and tiers."""
