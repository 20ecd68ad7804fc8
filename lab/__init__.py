"""Lab tooling: the manifest reader (lab.manifest) and the secrets generator."""
