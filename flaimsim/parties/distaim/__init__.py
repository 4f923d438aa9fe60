"""DistAIM's room: its secure steps under MPyC, its server commands, its two engines and its cost model."""
