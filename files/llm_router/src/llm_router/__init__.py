"""llm-router: compression and chat routing over a local engine, a cloud API and zstd."""

__version__ = "1.0.0"
