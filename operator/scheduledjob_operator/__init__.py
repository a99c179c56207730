"""kopf wiring of the ScheduledJob operator: handlers fetch, call the pure domain, and write."""
