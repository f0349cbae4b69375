"""Staff statistics (/stats) and the weekly report with its chart."""
