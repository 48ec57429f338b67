"""Core types every layer may use: errors, config validation, signals, the results contract, process sync, environment variables."""
