"""The server side of HTTP: body reading, error rendering, observation, protocol limits."""
