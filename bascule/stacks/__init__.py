"""Pulumi landing zones (Azure source, OVHcloud target) from one provider-neutral spec."""
