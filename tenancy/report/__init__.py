"""`tenancy report`: figures and tables from run and study directories (the results contract only)."""
