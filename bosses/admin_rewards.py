"""Reward tables in the admin (docs/rewards.md)."""
