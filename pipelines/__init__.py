"""The fleetml code location: definitions, jobs, schedules and the environment switch."""
