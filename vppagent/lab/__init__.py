"""The lab: a cluster on one machine (network namespaces, agents, BIRD) and a Felix stand-in."""
