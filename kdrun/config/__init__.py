"""The config vocabulary: typed sections (schema), the teacher=/student= roles, the _target_ allowlist."""
