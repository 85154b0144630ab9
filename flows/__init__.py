"""Prefect flows: each reads as a plan of task calls."""
