"""`make run`: the whole product on a local (or KUBECONFIG) cluster, for a newcomer and for the tests."""
