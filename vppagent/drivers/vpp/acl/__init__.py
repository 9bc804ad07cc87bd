"""ACLs: desired lists per endpoint, rendering, the pure plan, and writing a plan to VPP."""
