"""Kubernetes Services on VPP (issue 17): the desired-state model and the API server source.

`model` is pure (Service and EndpointSlice JSON -> frontends -> ready backends, diffable);
`source` lists and watches the API server with the official `kubernetes` client.
"""
