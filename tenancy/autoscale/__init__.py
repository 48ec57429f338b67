"""Autoscaling serving-engine replicas under time-varying load (`tenancy scale`).

config: the scenario's `autoscale:` block; workload: the demand the trace follows; capacity:
replicas needed for a rate; replica: one engine process; fleet: the replicas and their router;
policies/: one decision rule per file; run: one policy on the real fleet; simulate: the same
policies on a fluid model of the fleet; calibration: capacity per replica count, measured;
metrics: efficiency, cost and SLO figures; cli: the command.
"""
