"""One router per resource: solve, nodes, jobs, plan (and observations), health, k8s, ui."""
