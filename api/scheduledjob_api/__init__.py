"""SelfHelp admin REST API for scheduled jobs, served from a watch-backed cache of the cluster."""

API_VERSION = "v1"
