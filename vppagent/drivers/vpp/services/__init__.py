"""Kubernetes Services as VPP cnat translations (docs/services.md): `translations` says what the
services need (pure), `plan` compares it with what VPP holds and decides what is ours (pure),
`converge` writes it."""
