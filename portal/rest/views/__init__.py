"""The management REST API's views, one module per resource. Each one is thin: scope the
query to the caller's tenants (others' objects are 404), then call a portal service."""
