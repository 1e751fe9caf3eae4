"""The fault rig's reusable parts: network namespaces and a user-space link emulator (docs/faults.md)."""
