"""oai2ollama: Ollama's HTTP API on top of any OpenAI-compatible upstream."""

__version__ = "2.0.0"
