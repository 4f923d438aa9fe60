"""MPC compute servers: the server program, launcher and watchdog, wire counters, client input sharing, the secure select/measure steps, DistAIM engines and the cost model."""
