"""Developer tooling: the embedded control plane, the local platform, and their CLI verbs."""
