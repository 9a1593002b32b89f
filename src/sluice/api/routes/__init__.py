"""HTTP handlers: parse the request, authorize, call a service in the thread pool, render the result."""
