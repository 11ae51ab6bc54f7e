"""The demo: a tiny offline Qwen3 model and the supervised warm start that makes it a useful policy."""
