"""The chain every call passes: a surface builds a `Call`, stages act on it in order.

A surface (the LLM HTTP listener, a tool gateway, a check API) turns its
wire format into a `Call` and runs a declared chain of stages over it. The
runner owns ordering, spans and timing; stages own their decisions.
"""
