"""Prefect tasks: thin wrappers that call mlcore and publish what a person watching the run wants to see."""
