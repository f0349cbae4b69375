"""The runtime: the command line, configuration, wiring, the scheduler and planner, the web server and health."""
