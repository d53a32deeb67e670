"""Numbered SQL files for the project's own tables (shipped as package data: a wheel install finds them here)."""
