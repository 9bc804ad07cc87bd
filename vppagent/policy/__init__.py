"""Calico policy core: typed model, reference evaluator and first-match compiler (all pure).

- `model`: immutable Rule/Policy/Profile/Tier/endpoint objects built from the state's protobufs,
  and `validate_policy` / `validate_profile` for the store (fail closed).
- `packet`: the Packet a verdict is asked about, and its text syntax.
- `evaluate`: the reference evaluator (the oracle): Felix's semantics, clarity over speed.
- `compile`: one endpoint and direction → a flat first-match list the VPP ACL plugin can run.
- `generate`: random states and packets for differential tests (reused by the drivers).
- `catalog` (typed, cached view of a DataplaneState and Felix config), `boxes` (the packet-space
  algebra under the compiler), `flat` (FlatRule / CompiledList / first_match), `cli` (trace, compile).
"""
