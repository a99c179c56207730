"""Pure domain of SelfHelp scheduled jobs: no kopf, no Kubernetes client, no web framework.

Shared by the operator and the admin API, which never import each other.
"""
