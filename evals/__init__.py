"""Evaluation harnesses (own simulator in process and over the wire, public datasets) and their scoring."""
