"""Helpers for the tests of deploy/ and compose.yaml (tests/unit/test_deploy_*.py)."""
