"""Business rules. Views, admin, the REST API, tasks and tests all call these functions."""
