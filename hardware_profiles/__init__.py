"""Hardware profiles (TOML, strict schema, sourced figures) for constraints and energy.

See README.md in this folder; the profiles arrive with the energy-report issue."""
