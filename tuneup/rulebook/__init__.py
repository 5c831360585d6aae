"""Rules and profiles: TOML data -> Rule and Profile objects."""
