"""The rules: findings from what a host reported, working hours, what the clock makes due,
each professional's readiness."""
