"""The API's logic, free of HTTP: handlers parse, call a service, and render what it returns."""
