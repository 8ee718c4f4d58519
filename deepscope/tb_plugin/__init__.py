"""The TensorBoard plugin: loader, routes and the built frontend. Never imports torch."""
