"""The compiled graph that langgraph.json serves; LangGraph Server and `langgraph dev` bring their own persistence."""

from graph.builder import build_graph

graph = build_graph()
