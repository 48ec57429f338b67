"""The `tenancy` commands, one module each."""
