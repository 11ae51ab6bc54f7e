"""The demo: its tasks beyond the core (the Countdown game) and what builds its tiny model."""
