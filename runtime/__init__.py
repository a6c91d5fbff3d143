"""Running a process: settings, logs, signals and the loop, heartbeats, waiting for services."""
