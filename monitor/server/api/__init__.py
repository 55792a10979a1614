"""HTTP routers. Thin: authenticate, read the body, call a service, shape the answer."""
