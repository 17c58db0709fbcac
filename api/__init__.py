"""The HTTP API (aiohttp): answers from the Redis cache the workers maintain; never imports Faust."""
