"""HTTP routes; each module only translates between HTTP and the service."""
