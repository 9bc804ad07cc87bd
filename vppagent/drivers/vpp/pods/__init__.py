"""Pods on VPP: CNI Add/Del, their VPP interfaces, IP on them, and the Linux side."""
