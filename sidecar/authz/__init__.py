"""Authorization: RBAC roles and ABAC policies, both evaluated by Cedar."""
