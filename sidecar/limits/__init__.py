"""Rate limits, token and cost budgets, and concurrency caps: rules, stores, the stage."""
