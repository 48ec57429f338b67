"""A scenario's run: parse and expand, launch tenants in each sharing mode, time them, write results."""
