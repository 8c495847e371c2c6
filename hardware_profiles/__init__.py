"""Hardware profiles (TOML, strict schema, sourced figures) for constraints and energy.

See README.md in this folder: the shipped profiles, the schema (``profile.py``), the design rules
(``rules.py``) and the check that counts a network and runs them (``constraints.py``)."""
