"""Storage connectors: one small contract (`base.Connector`) and its implementations.

Only modules in this package import cloud SDKs.
"""
